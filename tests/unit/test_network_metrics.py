"""docs/network-formats.md §7: the flat node-metrics dict, checked against literal expected dicts."""

from agent.network_metrics import NETWORK_METRIC_KEYS, network_node_metrics
from proto.telemetry.v1.readings import GpuSample, HostInventory, HostSample, NodeInventory, NodeSample
from tests.metrics_fixtures.readings import INVENTORY, SAMPLE_1

P = "metrics.resource.node"

# Every key the network's metrics system knows, spelled out here (not taken
# from the module) so that a renamed key fails.
CONTRACT_KEYS = [
    f"{P}.memory.freeMem", f"{P}.memory.usedMem", f"{P}.memory.averageUtil",
    f"{P}.memory.usedSwap", f"{P}.memory.freeSwap", f"{P}.memory.pageFaultsPerSec",
    f"{P}.vcpu.load1m", f"{P}.vcpu.load5m", f"{P}.vcpu.load15m", f"{P}.vcpu.runningThreads",
    f"{P}.vcpu.runningProcesses", f"{P}.vcpu.totalThreads", f"{P}.vcpu.totalProcesses",
    f"{P}.storage.disks.memory.freeMem", f"{P}.storage.disks.memory.usedMem",
    f"{P}.storage.disks.memory.maxDisk", f"{P}.storage.disks.memory.minDisk",
    f"{P}.storage.disks.iops.blocksPerSec", f"{P}.storage.disks.iops.readBytes",
    f"{P}.storage.disks.iops.writeBytes", f"{P}.storage.disks.iops.total",
    f"{P}.storage.disks.iops.active", f"{P}.storage.disks.iops.response",
    f"{P}.storage.freeMem", f"{P}.storage.usedMem",
    f"{P}.network.txBytesTotal", f"{P}.network.rxBytesTotal", f"{P}.network.rxBytes1m",
    f"{P}.network.rxBytes5m", f"{P}.network.rxBytes15m", f"{P}.network.txBytes1m",
    f"{P}.network.txBytes5m", f"{P}.network.txBytes15m",
    f"{P}.gpu.totalUsedMem", f"{P}.gpu.totalFreeMem", f"{P}.gpu.totalMem",
    f"{P}.gpu.avgMemUtilization", f"{P}.gpu.avgCudaUtilization", f"{P}.gpu.avgPowerUtilization",
    f"{P}.gpu.avgTemperature", f"{P}.gpu.count",
    f"{P}.gpus", "nodeId", "clusterId", "type",
]


def test_keys_are_exactly_the_contracts():
    assert sorted(network_node_metrics(None, None, "n", "c")) == sorted(CONTRACT_KEYS)
    assert sorted(NETWORK_METRIC_KEYS) == sorted(k for k in CONTRACT_KEYS if k not in ("nodeId", "clusterId", "type"))


def test_two_gpu_node_with_one_gpu_lost():
    assert network_node_metrics(INVENTORY, SAMPLE_1, "node-a", "cluster-7") == {
        f"{P}.memory.freeMem": 300_000,
        f"{P}.memory.usedMem": 200_000,
        f"{P}.memory.averageUtil": 38.83,  # 200000 / 515000
        f"{P}.memory.usedSwap": 1_024,
        f"{P}.memory.freeSwap": 7_168,
        f"{P}.memory.pageFaultsPerSec": 1_200.0,
        f"{P}.vcpu.load1m": 4.25,
        f"{P}.vcpu.load5m": 3.5,
        f"{P}.vcpu.load15m": 2.75,
        f"{P}.vcpu.runningThreads": 5,
        f"{P}.vcpu.runningProcesses": 5,
        f"{P}.vcpu.totalThreads": 4_100,
        f"{P}.vcpu.totalProcesses": 812,
        f"{P}.storage.disks.memory.freeMem": 1_500_000,
        f"{P}.storage.disks.memory.usedMem": 400_000,
        f"{P}.storage.disks.memory.maxDisk": 3_815_458,
        f"{P}.storage.disks.memory.minDisk": 1_907_729,
        f"{P}.storage.disks.iops.blocksPerSec": 30_720.0,  # 15 MiB/s in 512-byte blocks
        f"{P}.storage.disks.iops.readBytes": 10_485_760.0,
        f"{P}.storage.disks.iops.writeBytes": 5_242_880.0,
        f"{P}.storage.disks.iops.total": 450.0,
        f"{P}.storage.disks.iops.active": 12.5,
        f"{P}.storage.disks.iops.response": None,
        f"{P}.storage.freeMem": 1_500_000,
        f"{P}.storage.usedMem": 400_000,
        f"{P}.network.txBytesTotal": 9_000_000_500,
        f"{P}.network.rxBytesTotal": 12_000_000_700,
        f"{P}.network.rxBytes1m": 1_900_000.0,
        f"{P}.network.rxBytes5m": 1_800_000.0,
        f"{P}.network.rxBytes15m": 1_700_000.0,
        f"{P}.network.txBytes1m": 900_000.0,
        f"{P}.network.txBytes5m": 800_000.0,
        f"{P}.network.txBytes15m": 700_000.0,
        f"{P}.gpu.totalUsedMem": 61_440,
        f"{P}.gpu.totalFreeMem": 20_480,
        f"{P}.gpu.totalMem": 163_840,
        f"{P}.gpu.avgMemUtilization": 75.0,
        f"{P}.gpu.avgCudaUtilization": 87.0,
        f"{P}.gpu.avgPowerUtilization": 77.5,  # 310 W of 400 W
        f"{P}.gpu.avgTemperature": 71.0,
        f"{P}.gpu.count": 2,
        f"{P}.gpus": [
            {"gpu_id": 0, "usedMem": 61_440, "freeMem": 20_480, "totalMem": 81_920, "memUtilization": 75.0,
             "cudaUtilization": 87.0, "powerUtilization": 77.5, "temperature": 71.0},
            {"gpu_id": 1, "usedMem": None, "freeMem": None, "totalMem": 81_920, "memUtilization": None,
             "cudaUtilization": None, "powerUtilization": None, "temperature": None},
        ],
        "nodeId": "node-a",
        "clusterId": "cluster-7",
        "type": "hardware",
    }


def test_averages_over_several_gpus():
    sample = NodeSample(
        timestamp=1.0,
        host=None,
        gpus=(
            GpuSample(0, "GPU-0", utilization_gpu_pct=10.0, memory_total_mb=1000, memory_used_mb=250,
                      memory_free_mb=750, temperature_c=40.0, power_draw_w=50.0, power_limit_w=100.0),
            GpuSample(1, "GPU-1", utilization_gpu_pct=31.0, memory_total_mb=1000, memory_used_mb=500,
                      memory_free_mb=500, temperature_c=61.0, power_draw_w=75.0, power_limit_w=300.0),
        ),
    )
    m = network_node_metrics(None, sample, "n", "c")
    assert (m[f"{P}.gpu.totalUsedMem"], m[f"{P}.gpu.totalFreeMem"], m[f"{P}.gpu.totalMem"]) == (750, 1250, 2000)
    assert m[f"{P}.gpu.avgMemUtilization"] == 37.5
    assert m[f"{P}.gpu.avgCudaUtilization"] == 20.5
    assert m[f"{P}.gpu.avgPowerUtilization"] == 37.5  # mean of 50 % and 25 %
    assert m[f"{P}.gpu.avgTemperature"] == 50.5
    assert m[f"{P}.gpu.count"] == 2
    assert m[f"{P}.memory.freeMem"] is None


def test_cpu_node_before_rates_exist():
    inventory = NodeInventory(
        node_id="cpu-1",
        node_name="cpu-1",
        host=HostInventory("cpu-1", "6.1", "Debian", 8, 4, 32_000, 0),
        nvml_status="library not found",
    )
    host = HostSample(load1=0.5, memory_total_mb=32_000, memory_used_mb=8_000, memory_available_mb=24_000,
                      swap_total_mb=0, swap_used_mb=0, tx_bytes_total=10, rx_bytes_total=20)
    m = network_node_metrics(inventory, NodeSample(timestamp=1.0, host=host), "cpu-1", "c")
    assert {k: m[k] for k in m if ".gpu" in k} == {
        f"{P}.gpu.totalUsedMem": 0,
        f"{P}.gpu.totalFreeMem": 0,
        f"{P}.gpu.totalMem": 0,
        f"{P}.gpu.avgMemUtilization": None,
        f"{P}.gpu.avgCudaUtilization": None,
        f"{P}.gpu.avgPowerUtilization": None,
        f"{P}.gpu.avgTemperature": None,
        f"{P}.gpu.count": 0,
        f"{P}.gpus": [],
    }
    assert {k: m[k] for k in m if ".network." in k} == {
        f"{P}.network.txBytesTotal": 10,
        f"{P}.network.rxBytesTotal": 20,
        f"{P}.network.rxBytes1m": None,
        f"{P}.network.rxBytes5m": None,
        f"{P}.network.rxBytes15m": None,
        f"{P}.network.txBytes1m": None,
        f"{P}.network.txBytes5m": None,
        f"{P}.network.txBytes15m": None,
    }
    assert m[f"{P}.memory.averageUtil"] == 25.0
    assert m[f"{P}.memory.freeSwap"] == 0
    assert m[f"{P}.storage.disks.memory.maxDisk"] is None
    assert m[f"{P}.storage.disks.iops.blocksPerSec"] is None


def test_no_readings_yet_leaves_every_reading_none():
    m = network_node_metrics(None, None, "n1", "c1")
    assert m.pop(f"{P}.gpus") == []
    assert (m.pop("nodeId"), m.pop("clusterId"), m.pop("type")) == ("n1", "c1", "hardware")
    assert set(m.values()) == {None}
