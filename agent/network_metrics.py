"""Node metrics under the names the network's metrics system knows (docs/network-formats.md §7).

`network_node_metrics` is pure: readings in, the flat dict out, with every key
of the contract present. A value we could not read is None (never a made-up
0); the old daemon's placeholders are gone, and the 1m/5m/15m network rates
are real (the host collector keeps load-average-style moving averages).

Units, key by key:

- `memory.*Mem`, `memory.*Swap`, `storage.*Mem`, `storage.disks.memory.*`,
  `gpu.total*Mem`, `gpus[].*Mem`: MB (1024*1024 bytes), integers.
- `memory.freeMem`: memory available to new work (MemAvailable), not the
  kernel's "free" that excludes reclaimable cache.
- `memory.averageUtil`: percent of physical memory in use (0..100).
- `memory.pageFaultsPerSec`: page faults per second over the last interval.
- `vcpu.load*`: load averages. `vcpu.runningThreads` and
  `vcpu.runningProcesses`: the kernel's count of runnable tasks (Linux
  schedules threads, so one count serves both); `totalThreads`: every task,
  `totalProcesses`: every process.
- `storage.freeMem`/`usedMem` and `storage.disks.memory.freeMem`/`usedMem`:
  the host's root filesystem; `maxDisk`/`minDisk`: the largest and smallest
  physical disk (None without disks).
- `storage.disks.iops.readBytes`/`writeBytes`: bytes per second, all disks;
  `blocksPerSec`: the same traffic in 512-byte blocks per second (the
  kernel's sector unit); `total`: read + write operations per second;
  `active`: percent of time the busiest disk had I/O in flight; `response`:
  None (per-request latency is not measured).
- `network.txBytesTotal`/`rxBytesTotal`: bytes since boot over real NICs;
  `network.{rx,tx}Bytes{1m,5m,15m}`: bytes per second, exponentially
  weighted over 1, 5 and 15 minutes (None until the agent has two samples).
- `gpu.avg*Utilization`, `gpus[].*Utilization`: percent (0..100).
  `memUtilization` is the share of GPU memory in use, `cudaUtilization` the
  share of time a kernel ran, `powerUtilization` power draw over power limit.
  `temperature`/`avgTemperature`: degrees Celsius. Averages skip GPUs whose
  value is unknown (a lost GPU) and are None when no GPU has one.
- `gpu.total*Mem`: sums over the GPUs whose value is known; 0 on a node
  without GPUs, None before the first sample (`totalMem` then comes from the
  inventory).
- `gpu.count`: GPUs in the inventory (lost ones included).
- Before the first sample every reading is None; `nodeId`, `clusterId` and
  `type` are always set.
- `gpus[].gpu_id`: the GPU's NVML index.
"""

from __future__ import annotations

from collections.abc import Iterable

from proto.telemetry.v1.readings import GpuSample, HostSample, NodeInventory, NodeSample

__all__ = ["NETWORK_METRIC_KEYS", "network_node_metrics"]

P = "metrics.resource.node"
SECTOR_BYTES = 512

NETWORK_METRIC_KEYS = (
    *(f"{P}.memory.{k}" for k in ("freeMem", "usedMem", "averageUtil", "usedSwap", "freeSwap", "pageFaultsPerSec")),
    *(
        f"{P}.vcpu.{k}"
        for k in (
            "load1m",
            "load5m",
            "load15m",
            "runningThreads",
            "runningProcesses",
            "totalThreads",
            "totalProcesses",
        )
    ),
    *(f"{P}.storage.disks.memory.{k}" for k in ("freeMem", "usedMem", "maxDisk", "minDisk")),
    *(f"{P}.storage.disks.iops.{k}" for k in ("blocksPerSec", "readBytes", "writeBytes", "total", "active", "response")),
    *(f"{P}.storage.{k}" for k in ("freeMem", "usedMem")),
    *(
        f"{P}.network.{k}"
        for k in (
            "txBytesTotal",
            "rxBytesTotal",
            "rxBytes1m",
            "rxBytes5m",
            "rxBytes15m",
            "txBytes1m",
            "txBytes5m",
            "txBytes15m",
        )
    ),
    *(
        f"{P}.gpu.{k}"
        for k in (
            "totalUsedMem",
            "totalFreeMem",
            "totalMem",
            "avgMemUtilization",
            "avgCudaUtilization",
            "avgPowerUtilization",
            "avgTemperature",
            "count",
        )
    ),
    f"{P}.gpus",
)


def _percent(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 2)


def _sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _sum(values: Iterable[float | None]) -> float | None:
    """Sum of the known values; 0 over no GPUs at all, None when every value is unknown."""
    values = list(values)
    known = [v for v in values if v is not None]
    return sum(known) if known or not values else None


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 2) if known else None


def _gpu_entry(gpu: GpuSample, inventory_mb: dict[int, int]) -> dict:
    total = gpu.memory_total_mb if gpu.memory_total_mb is not None else inventory_mb.get(gpu.index)
    return {
        "gpu_id": gpu.index,
        "usedMem": gpu.memory_used_mb,
        "freeMem": gpu.memory_free_mb,
        "totalMem": total,
        "memUtilization": _percent(gpu.memory_used_mb, total),
        "cudaUtilization": gpu.utilization_gpu_pct,
        "powerUtilization": _percent(gpu.power_draw_w, gpu.power_limit_w),
        "temperature": gpu.temperature_c,
    }


def network_node_metrics(
    inventory: NodeInventory | None, sample: NodeSample | None, node_id: str, cluster_id: str
) -> dict:
    """The flat dict of docs/network-formats.md §7 for one node; see the module docstring for units."""
    host = sample.host if sample is not None and sample.host is not None else HostSample()
    host_inv = inventory.host if inventory is not None else None
    disks = [d.size_mb for d in host_inv.disks] if host_inv is not None else []
    inventory_mb = {g.index: g.memory_mb for g in inventory.gpus} if inventory is not None else {}
    gpus = [_gpu_entry(g, inventory_mb) for g in (sample.gpus if sample is not None else ())]
    if inventory is not None:
        gpu_count: int | None = len(inventory.gpus)
    else:
        gpu_count = len(gpus) if sample is not None else None
    if gpus:
        gpu_total_mb = _sum(g["totalMem"] for g in gpus)
    else:
        gpu_total_mb = sum(inventory_mb.values()) if inventory is not None else None
    disk_bytes_per_s = _add(host.disk_read_bytes_per_s, host.disk_write_bytes_per_s)
    fs_free = _sub(host.fs_total_mb, host.fs_used_mb)

    metrics = {
        f"{P}.memory.freeMem": host.memory_available_mb,
        f"{P}.memory.usedMem": host.memory_used_mb,
        f"{P}.memory.averageUtil": _percent(host.memory_used_mb, host.memory_total_mb),
        f"{P}.memory.usedSwap": host.swap_used_mb,
        f"{P}.memory.freeSwap": _sub(host.swap_total_mb, host.swap_used_mb),
        f"{P}.memory.pageFaultsPerSec": host.page_faults_per_s,
        f"{P}.vcpu.load1m": host.load1,
        f"{P}.vcpu.load5m": host.load5,
        f"{P}.vcpu.load15m": host.load15,
        f"{P}.vcpu.runningThreads": host.processes_running,
        f"{P}.vcpu.runningProcesses": host.processes_running,
        f"{P}.vcpu.totalThreads": host.threads_total,
        f"{P}.vcpu.totalProcesses": host.processes_total,
        f"{P}.storage.disks.memory.freeMem": fs_free,
        f"{P}.storage.disks.memory.usedMem": host.fs_used_mb,
        f"{P}.storage.disks.memory.maxDisk": max(disks) if disks else None,
        f"{P}.storage.disks.memory.minDisk": min(disks) if disks else None,
        f"{P}.storage.disks.iops.blocksPerSec": None if disk_bytes_per_s is None else disk_bytes_per_s / SECTOR_BYTES,
        f"{P}.storage.disks.iops.readBytes": host.disk_read_bytes_per_s,
        f"{P}.storage.disks.iops.writeBytes": host.disk_write_bytes_per_s,
        f"{P}.storage.disks.iops.total": _add(host.disk_read_iops, host.disk_write_iops),
        f"{P}.storage.disks.iops.active": host.disk_busy_pct,
        f"{P}.storage.disks.iops.response": None,
        f"{P}.storage.freeMem": fs_free,
        f"{P}.storage.usedMem": host.fs_used_mb,
        f"{P}.network.txBytesTotal": host.tx_bytes_total,
        f"{P}.network.rxBytesTotal": host.rx_bytes_total,
        f"{P}.network.rxBytes1m": host.rx_bytes_per_s_1m,
        f"{P}.network.rxBytes5m": host.rx_bytes_per_s_5m,
        f"{P}.network.rxBytes15m": host.rx_bytes_per_s_15m,
        f"{P}.network.txBytes1m": host.tx_bytes_per_s_1m,
        f"{P}.network.txBytes5m": host.tx_bytes_per_s_5m,
        f"{P}.network.txBytes15m": host.tx_bytes_per_s_15m,
        f"{P}.gpu.totalUsedMem": _sum(g["usedMem"] for g in gpus) if sample is not None else None,
        f"{P}.gpu.totalFreeMem": _sum(g["freeMem"] for g in gpus) if sample is not None else None,
        f"{P}.gpu.totalMem": gpu_total_mb,
        f"{P}.gpu.avgMemUtilization": _mean(g["memUtilization"] for g in gpus),
        f"{P}.gpu.avgCudaUtilization": _mean(g["cudaUtilization"] for g in gpus),
        f"{P}.gpu.avgPowerUtilization": _mean(g["powerUtilization"] for g in gpus),
        f"{P}.gpu.avgTemperature": _mean(g["temperature"] for g in gpus),
        f"{P}.gpu.count": gpu_count,
        f"{P}.gpus": gpus,
        "nodeId": node_id,
        "clusterId": cluster_id,
        "type": "hardware",
    }
    return metrics
