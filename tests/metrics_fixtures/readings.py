"""Literal readings of one two-GPU node, shared by the metrics tests."""

from proto.telemetry.v1.readings import (
    MIB,
    Attribution,
    CollectorStatus,
    DeviceAllocation,
    DiskInfo,
    GpuInventory,
    GpuProcess,
    GpuSample,
    HealthEvent,
    HostInventory,
    HostSample,
    MigDevice,
    MigSample,
    NicInfo,
    NicRate,
    NodeInventory,
    NodeSample,
    NvLinkState,
    ProcessOwner,
    ResourceCount,
)

NODE_ID = "node-a"

INVENTORY = NodeInventory(
    node_id=NODE_ID,
    node_name="worker-1",
    host=HostInventory(
        hostname="worker-1",
        kernel="6.1.0-18-amd64",
        os="Debian GNU/Linux 12",
        cpu_logical=64,
        cpu_physical=32,
        memory_total_bytes=515_000 * MIB,
        swap_total_bytes=8_192 * MIB,
        disks=(DiskInfo("nvme0n1", 1_907_729 * MIB), DiskInfo("nvme1n1", 3_815_458 * MIB)),
        nics=(NicInfo("eth0", 25_000, "aa:bb:cc:dd:ee:01"), NicInfo("ib0", None)),
    ),
    gpus=(
        GpuInventory(0, "GPU-aaaa", "NVIDIA A100-SXM4-80GB", 81_920 * MIB, "00000000:07:00.0", (8, 0), "ampere",
                     power_limit_w=400.0),
        GpuInventory(1, "GPU-bbbb", "NVIDIA A100-SXM4-80GB", 81_920 * MIB, "00000000:0F:00.0", (8, 0), "ampere",
                     power_limit_w=400.0),
    ),
    driver_version="550.54.15",
    cuda_driver_version="12.4",
)

HOST = HostSample(
    cpu_percent=37.5,
    load1=4.25,
    load5=3.5,
    load15=2.75,
    memory_total_bytes=515_000 * MIB,
    memory_used_bytes=200_000 * MIB,
    memory_available_bytes=300_000 * MIB,
    swap_total_bytes=8_192 * MIB,
    swap_used_bytes=1_024 * MIB,
    page_faults_per_s=1_200.0,
    disk_read_bytes_per_s=10_485_760.0,
    disk_write_bytes_per_s=5_242_880.0,
    disk_read_iops=300.0,
    disk_write_iops=150.0,
    disk_busy_pct=12.5,
    fs_total_bytes=1_900_000 * MIB,
    fs_used_bytes=400_000 * MIB,
    nics=(
        NicRate("eth0", 9_000_000_000, 12_000_000_000, 1_000_000.0, 2_000_000.0),
        NicRate("ib0", 500, 700, None, None),
    ),
    tx_bytes_total=9_000_000_500,
    rx_bytes_total=12_000_000_700,
    tx_bytes_per_s=1_000_000.0,
    rx_bytes_per_s=2_000_000.0,
    tx_bytes_per_s_1m=900_000.0,
    tx_bytes_per_s_5m=800_000.0,
    tx_bytes_per_s_15m=700_000.0,
    rx_bytes_per_s_1m=1_900_000.0,
    rx_bytes_per_s_5m=1_800_000.0,
    rx_bytes_per_s_15m=1_700_000.0,
    processes_total=812,
    processes_running=5,
    threads_total=4_100,
)

GPU0 = GpuSample(
    index=0,
    uuid="GPU-aaaa",
    utilization_gpu_pct=87.0,
    utilization_memory_pct=41.0,
    memory_total_bytes=81_920 * MIB,
    memory_used_bytes=61_440 * MIB,
    memory_free_bytes=20_480 * MIB,
    memory_reserved_bytes=512 * MIB,
    temperature_c=71.0,
    power_draw_w=310.0,
    power_limit_w=400.0,
    sm_clock_mhz=1_410,
    memory_clock_mhz=1_593,
    throttle_reasons=("sw_power_cap",),
    ecc_corrected_volatile=3,
    ecc_uncorrected_volatile=0,
    ecc_corrected_aggregate=17,
    ecc_uncorrected_aggregate=1,
    retired_pages_pending=False,
    retired_pages_count=2,
    remapped_rows_pending=False,
    remapped_rows_failure=False,
    remapped_rows_correctable=4,
    remapped_rows_uncorrectable=1,
    pcie_replay_count=6,
    nvlinks=(NvLinkState(0, True), NvLinkState(1, False)),
    compute_processes=2,
)

# GPU 1 fell off the bus: only its identity and the lost flag are known.
GPU1_LOST = GpuSample(index=1, uuid="GPU-bbbb", lost=True, error="NVML_ERROR_GPU_IS_LOST")

SAMPLE_1 = NodeSample(
    timestamp=1_790_000_000.0,
    host=HOST,
    gpus=(GPU0, GPU1_LOST),
    collectors=(CollectorStatus("gpu", True, 0.004), CollectorStatus("host", False, 0.25, "OSError: boom")),
    health_events=(
        HealthEvent("xid", 1_789_999_999.0, 0, "GPU-aaaa", 79, "GPU has fallen off the bus"),
        HealthEvent("xid", 1_789_999_999.5, 0, "GPU-aaaa", 48),
        HealthEvent("gpu_lost", 1_789_999_999.6, 1, "GPU-bbbb", nvml_error="NVML_ERROR_GPU_IS_LOST"),
    ),
)

SAMPLE_2 = NodeSample(
    timestamp=1_790_000_010.0,
    host=HOST,
    gpus=(GPU0, GPU1_LOST),
    collectors=(CollectorStatus("gpu", True, 0.005), CollectorStatus("host", True, 0.002)),
    health_events=(HealthEvent("xid", 1_790_000_005.0, 0, "GPU-aaaa", 79),),
)


def node_states():
    """Three nodes as the aggregator's registry would hold them (imported lazily: aggregator side)."""
    from aggregator.telemetry.model import NodeState

    second_inventory = NodeInventory(
        node_id="node-b",
        node_name="worker-2",
        host=INVENTORY.host,
        gpus=(GpuInventory(0, "GPU-cccc", "NVIDIA H100 80GB HBM3", 81_559 * MIB, "00000000:18:00.0", (9, 0), "hopper"),),
        driver_version="550.54.15",
        cuda_driver_version="12.4",
    )
    second_sample = NodeSample(
        timestamp=1_790_000_009.0,
        host=HOST,
        gpus=(
            GpuSample(0, "GPU-cccc", utilization_gpu_pct=45.0, memory_total_bytes=81_559 * MIB, memory_used_bytes=10_000 * MIB,
                      memory_free_bytes=71_559 * MIB, temperature_c=55.0, power_draw_w=500.0, power_limit_w=700.0),
        ),
    )
    stale_inventory = NodeInventory(node_id="node-c", node_name="worker-3", host=None, nvml_status="library not found")
    return [
        NodeState("node-a", "unhealthy", INVENTORY, SAMPLE_2, 1_790_000_010.0, 1_789_990_000.0,
                  cluster_id="cluster-7", samples_received=120, dropped_samples=2),
        NodeState("node-b", "healthy", second_inventory, second_sample, 1_790_000_009.0, 1_789_990_000.0,
                  cluster_id="cluster-7", samples_received=80),
        NodeState("node-c", "stale", stale_inventory, None, 1_789_999_000.0, 1_789_990_000.0,
                  cluster_id="cluster-7", samples_received=5, dropped_samples=1),
    ]


# A node whose GPUs carry pods: GPU 0 whole to ml/train-0 (two processes and a
# host process), GPU 1 split into two MIG devices held by two inference pods.
GIB = 1024 * 1024 * 1024
ATTRIBUTED_INVENTORY = NodeInventory(
    node_id="node-d",
    node_name="worker-4",
    host=INVENTORY.host,
    gpus=(
        GpuInventory(0, "GPU-dddd", "NVIDIA H100 80GB HBM3", 81_559 * MIB, "00000000:07:00.0", (9, 0), "hopper"),
        GpuInventory(
            1, "GPU-eeee", "NVIDIA A100-SXM4-80GB", 81_920 * MIB, "00000000:0F:00.0", (8, 0), "ampere", mig_enabled=True,
            mig_devices=(MigDevice(0, "MIG-1111", 40_960 * MIB, "3g.40gb"), MigDevice(1, "MIG-2222", 10_240 * MIB, "1g.10gb")),
        ),
    ),
)  # fmt: skip
ATTRIBUTED_SAMPLE = NodeSample(
    timestamp=1_790_000_020.0,
    host=HOST,
    gpus=(
        GpuSample(
            0, "GPU-dddd", utilization_gpu_pct=93.0, memory_total_bytes=81_559 * MIB, memory_used_bytes=30_000 * MIB,
            temperature_c=64.0, compute_processes=2,
            processes=(
                GpuProcess(4101, "compute", 20 * GIB, 80.0, 40.0),
                GpuProcess(4102, "compute", 2 * GIB, 5.0, 1.0),
                GpuProcess(7001, "compute+graphics", 300 * 1024 * 1024),
            ),
        ),
        GpuSample(
            1, "GPU-eeee", utilization_gpu_pct=20.0, temperature_c=40.0, compute_processes=2,
            unsupported=("process_utilization",),
            processes=(
                GpuProcess(5201, "compute", 8 * GIB, mig_uuid="MIG-1111"),
                GpuProcess(5301, "compute", 4 * GIB, mig_uuid="MIG-2222"),
            ),
            migs=(
                MigSample(0, "MIG-1111", 40 * GIB, 8 * GIB, None, ("utilization_gpu_pct",)),
                MigSample(1, "MIG-2222", 10 * GIB, 4 * GIB, None, ("utilization_gpu_pct",)),
            ),
        ),
    ),
    collectors=(
        CollectorStatus("gpu", True, 0.004), CollectorStatus("host", True, 0.002), CollectorStatus("attribution", True, 0.0001),
    ),
    attribution=Attribution(
        available=True,
        refreshed_at=1_790_000_015.0,
        pods=12,
        allocations=(
            DeviceAllocation("ml", "train-0", "trainer", "nvidia.com/gpu", "GPU-dddd", "GPU-dddd"),
            DeviceAllocation("serve", "infer-0", "server", "nvidia.com/mig-3g.40gb", "MIG-1111", "GPU-eeee", "MIG-1111"),
            DeviceAllocation("serve", "infer-1", "server", "nvidia.com/mig-1g.10gb", "MIG-2222", "GPU-eeee", "MIG-2222"),
        ),
        owners=(
            ProcessOwner("host", (7001,)),
            ProcessOwner("pod", (4101, 4102), "ml", "train-0", "trainer", "uid-train", "c" * 64, "containerd"),
            ProcessOwner("pod", (5201,), "serve", "infer-0", "server", "uid-i0", "d" * 64, "containerd"),
            ProcessOwner("pod", (5301,), "serve", "infer-1", "server", "uid-i1", "e" * 64, "containerd"),
        ),
        allocatable=(ResourceCount("nvidia.com/gpu", 1), ResourceCount("nvidia.com/mig-1g.10gb", 1),
                     ResourceCount("nvidia.com/mig-3g.40gb", 1)),
    ),
)  # fmt: skip
