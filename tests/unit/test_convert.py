"""Readings dataclasses survive the trip through their protobuf wire form."""

import math

import pytest

from proto.telemetry.v1 import convert
from proto.telemetry.v1 import readings as r
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import MIB

FULL_INVENTORY = r.NodeInventory(
    node_id="node-a",
    node_name="gpu-a-1",
    host=r.HostInventory(
        hostname="gpu-a-1",
        kernel="6.1.0-18-amd64",
        os="Debian GNU/Linux 12 (bookworm)",
        cpu_logical=96,
        cpu_physical=48,
        memory_total_bytes=1_031_891 * MIB,
        swap_total_bytes=0,
        disks=(r.DiskInfo("nvme0n1", 3_815_447 * r.MIB, False, "SAMSUNG MZQL23T8"),),
        nics=(r.NicInfo("eth0", 100_000, "0c:42:a1:00:00:01"), r.NicInfo("lo", None, "")),
    ),
    gpus=(
        r.GpuInventory(
            index=0,
            uuid="GPU-11111111-2222-3333-4444-555555555555",
            name="NVIDIA A100-SXM4-80GB",
            memory_bytes=81920 * MIB,
            pci_bus_id="00000000:07:00.0",
            compute_capability=(8, 0),
            architecture="ampere",
            features=("tf32", "bf16", "mig"),
            mig_enabled=True,
            mig_pending=False,
            mig_devices=(r.MigDevice(0, "MIG-aaaa", 9728 * r.MIB, "1g.10gb"),),
            power_limit_w=400.0,
            unsupported=(),
        ),
        r.GpuInventory(
            index=1,
            uuid="GPU-2",
            name="Tesla T4",
            memory_bytes=15360 * MIB,
            compute_capability=None,
            mig_enabled=None,
            power_limit_w=None,
            unsupported=("mig_mode", "power_limit"),
        ),
    ),
    driver_version="550.54.15",
    cuda_driver_version="12.4",
    nvml_status="ok",
)

FULL_SAMPLE = r.NodeSample(
    timestamp=1_764_403_200.25,
    host=r.HostSample(
        cpu_percent=12.5,
        load1=1.0,
        load5=0.5,
        load15=0.25,
        memory_total_bytes=1_031_891 * MIB,
        memory_used_bytes=20_000 * MIB,
        memory_available_bytes=1_000_000 * MIB,
        swap_total_bytes=0,
        swap_used_bytes=0,
        page_faults_per_s=3.0,
        disk_read_bytes_per_s=None,
        nics=(r.NicRate("eth0", 10, 20, 1.5, None),),
        tx_bytes_total=10,
        rx_bytes_total=20,
        processes_total=312,
        threads_total=1400,
    ),
    gpus=(
        r.GpuSample(
            index=0,
            uuid="GPU-11111111-2222-3333-4444-555555555555",
            utilization_gpu_pct=0.0,  # 0 must stay 0, not become "unknown"
            memory_used_bytes=0,
            temperature_c=41.0,
            throttle_reasons=("gpu_idle",),
            ecc_uncorrected_volatile=0,
            remapped_rows_failure=False,
            nvlinks=(r.NvLinkState(0, True), r.NvLinkState(1, False)),
            unsupported=("pcie_replay_count",),
        ),
        r.GpuSample(index=1, uuid="GPU-2", lost=True, error="NVML_ERROR_GPU_IS_LOST"),
    ),
    collectors=(r.CollectorStatus("gpu", True, 0.003), r.CollectorStatus("host", False, 0.1, "OSError: x")),
)


def test_inventory_round_trips_with_optional_fields_kept_apart_from_zero():
    wire = convert.inventory_to_pb(FULL_INVENTORY)
    again = convert.inventory_from_pb(pb.NodeInventory.FromString(wire.SerializeToString()))
    assert again == FULL_INVENTORY
    assert wire.gpus[0].compute_capability_major == 8
    assert not wire.gpus[1].HasField("compute_capability_major")
    assert not wire.gpus[1].HasField("mig_enabled")
    assert wire.host.nics[0].speed_mbps == 100_000
    assert not wire.host.nics[1].HasField("speed_mbps")


def test_sample_round_trips_and_zero_is_not_unknown():
    wire = convert.sample_to_pb(FULL_SAMPLE)
    again = convert.sample_from_pb(pb.NodeSample.FromString(wire.SerializeToString()))
    assert again == FULL_SAMPLE
    assert wire.gpus[0].HasField("utilization_gpu_pct")
    assert wire.gpus[0].utilization_gpu_pct == 0.0
    assert not wire.gpus[0].HasField("power_draw_w")
    assert again.gpus[0].power_draw_w is None
    assert not wire.host.HasField("disk_read_bytes_per_s")
    assert again.gpus[1].lost is True


def test_sample_health_events_travel_separately():
    event = r.HealthEvent("xid", 5.0, gpu_index=0, gpu_uuid="GPU-1", xid=79, message="fell off the bus")
    sample = r.NodeSample(timestamp=5.0, host=None, health_events=(event,))
    again = convert.sample_from_pb(convert.sample_to_pb(sample))
    assert again.health_events == ()
    assert again.host is None


@pytest.mark.parametrize(
    "event",
    [
        r.HealthEvent("xid", 5.0, gpu_index=0, gpu_uuid="GPU-1", xid=79, message="fell off the bus"),
        r.HealthEvent("gpu_lost", 6.5, gpu_index=0, nvml_error="NVML_ERROR_GPU_IS_LOST"),
        r.HealthEvent("collector_error", 7.0, message="host: OSError"),
    ],
)
def test_health_event_round_trips(event):
    wire = convert.health_to_pb(event)
    assert convert.health_from_pb(pb.HealthEvent.FromString(wire.SerializeToString())) == event
    assert wire.HasField("gpu_index") == (event.gpu_index is not None)


def test_generic_entry_points_pick_the_class_by_message_name():
    wire = convert.to_pb(r.NicInfo("eth1", None, "aa"))
    assert isinstance(wire, pb.NicInfo)
    assert convert.from_pb(wire) == r.NicInfo("eth1", None, "aa")


def test_unknown_types_are_refused():
    with pytest.raises(convert.ConversionError, match="dict"):
        convert.to_pb({"a": 1})
    with pytest.raises(convert.ConversionError, match="Ack"):
        convert.from_pb(pb.Ack(acked_seq=1))


def test_nan_is_carried_not_hidden():
    # conversion is faithful; refusing NaN is the aggregator's validation job
    wire = convert.sample_to_pb(r.NodeSample(timestamp=1.0, host=r.HostSample(cpu_percent=math.nan)))
    assert math.isnan(convert.sample_from_pb(wire).host.cpu_percent)


# --- sizes: bytes on the wire, the deprecated whole-MiB fields still filled and still understood -------

ODD = 7_516_205_123  # not a whole MiB


def test_sizes_travel_in_bytes_and_the_old_mib_fields_are_still_filled():
    sample = r.NodeSample(timestamp=1.0, host=r.HostSample(memory_total_bytes=ODD, fs_used_bytes=ODD + 1),
                          gpus=(r.GpuSample(0, "GPU-1", memory_total_bytes=ODD, memory_used_bytes=0),))
    wire = pb.NodeSample.FromString(convert.sample_to_pb(sample).SerializeToString())
    assert (wire.gpus[0].memory_total_bytes, wire.gpus[0].memory_total_mb) == (ODD, 7168)
    assert wire.gpus[0].HasField("memory_used_mb") and wire.gpus[0].memory_used_mb == 0  # known 0, not unknown
    assert not wire.gpus[0].HasField("memory_free_mb") and not wire.gpus[0].HasField("memory_free_bytes")
    assert (wire.host.memory_total_bytes, wire.host.memory_total_mb, wire.host.fs_used_mb) == (ODD, 7168, 7168)
    assert convert.sample_from_pb(wire) == sample
    inventory = r.NodeInventory("n", "n", r.HostInventory("h", "k", "os", 1, 1, ODD, 3 * r.MIB,
                                                          disks=(r.DiskInfo("sda", ODD),)),
                                gpus=(r.GpuInventory(0, "GPU-1", "T4", ODD, mig_devices=(r.MigDevice(0, "MIG-1", ODD),)),))
    wire_inv = convert.inventory_to_pb(inventory)
    assert (wire_inv.gpus[0].memory_mb, wire_inv.gpus[0].mig_devices[0].memory_mb) == (7168, 7168)
    assert (wire_inv.host.memory_total_mb, wire_inv.host.swap_total_mb, wire_inv.host.disks[0].size_mb) == (7168, 3, 7168)
    assert convert.inventory_from_pb(wire_inv) == inventory


def test_a_message_from_an_older_agent_is_read_from_its_mib_fields():
    old = pb.NodeSample(timestamp=1.0, host=pb.HostSample(memory_total_mb=2048, swap_used_mb=0),
                        gpus=[pb.GpuSample(index=0, uuid="GPU-1", memory_total_mb=15360, memory_used_mb=0)])
    sample = convert.sample_from_pb(old)
    assert sample.host.memory_total_bytes == 2048 * r.MIB and sample.host.swap_used_bytes == 0
    assert sample.host.memory_used_bytes is None  # not sent: unknown, not 0
    assert (sample.gpus[0].memory_total_bytes, sample.gpus[0].memory_used_bytes) == (15360 * r.MIB, 0)
    old_inventory = pb.NodeInventory(node_id="n", host=pb.HostInventory(memory_total_mb=64, swap_total_mb=0,
                                                                       disks=[pb.DiskInfo(name="sda", size_mb=100)]),
                                     gpus=[pb.GpuInventory(index=0, uuid="GPU-1", name="T4", memory_mb=15360,
                                                           mig_devices=[pb.MigDevice(index=0, memory_mb=4864)])])
    inventory = convert.inventory_from_pb(old_inventory)
    assert inventory.host.memory_total_bytes == 64 * r.MIB and inventory.host.disks[0].size_bytes == 100 * r.MIB
    assert inventory.gpus[0].memory_bytes == 15360 * r.MIB
    assert inventory.gpus[0].mig_devices[0].memory_bytes == 4864 * r.MIB
