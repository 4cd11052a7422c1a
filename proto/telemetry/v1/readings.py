"""Typed readings shared by the agent and the aggregator.

These dataclasses are what the code passes around inside; `telemetry.proto`
is their wire form (see `convert.py`). They live beside the .proto because the
two are versioned together, and because `agent` and `aggregator` must never
import each other.

Convention: a value that could not be read is `None`. When a GPU reports a
field as not supported, its name is also listed in `unsupported`, so "unknown
because unsupported" and "unknown because no previous sample yet" (rates) can
be told apart.

Sizes are bytes, as NVML, psutil and /sys give them (`*_bytes`): nothing is
rounded on the way to `/metrics` or the aggregator. The network's formats count
whole MB (1024*1024 bytes; docs/network-formats.md): the annotation, the
cluster document, `nodes_data`, the node metrics names. They read the `*_mb`
properties, the one place bytes become MB (rounded down, as the driver's own
MiB figures are).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024  # the network's "MB"


def to_mb(size_bytes: int | None) -> int | None:
    """Whole MB (1024*1024 bytes, rounded down) of a size in bytes; None stays None."""
    return None if size_bytes is None else size_bytes // MIB

__all__ = [
    "HEALTH_KINDS",
    "MIB",
    "OWNER_SCOPES",
    "PROCESS_KINDS",
    "THROTTLE_REASONS",
    "Acknowledgement",
    "Attribution",
    "CollectorStatus",
    "DeviceAllocation",
    "DiskInfo",
    "GpuInventory",
    "GpuProcess",
    "GpuSample",
    "HealthEvent",
    "HostInventory",
    "HostSample",
    "MigDevice",
    "MigSample",
    "NicInfo",
    "NicRate",
    "NodeInventory",
    "NodeSample",
    "NvLinkState",
    "ProcessOwner",
    "ResourceCount",
    "to_mb",
]

# Clock-event ("throttle") reason names, in the order of NVML's bits
# (nvmlClocksEventReason*: bit 0 = gpu_idle ... bit 10 = reliability). The
# agent decodes the bitmask into these; the exposition emits one 0/1 series each.
THROTTLE_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
    "board_limit",
    "reliability",
)


# ---------------------------------------------------------------- inventory


@dataclass(frozen=True)
class MigDevice:
    index: int
    uuid: str
    memory_bytes: int
    profile: str = ""  # e.g. "1g.10gb" where NVML tells us

    @property
    def memory_mb(self) -> int:
        return self.memory_bytes // MIB


@dataclass(frozen=True)
class GpuInventory:
    index: int
    uuid: str
    name: str  # NVML device name, e.g. "NVIDIA A100-SXM4-80GB"
    memory_bytes: int  # total memory, as NVML reports it
    pci_bus_id: str = ""
    compute_capability: tuple[int, int] | None = None
    architecture: str = ""  # "ampere", "hopper", ... derived from compute capability
    features: tuple[str, ...] = ()  # derived from compute capability
    mig_enabled: bool | None = None  # current MIG mode; None = not supported
    mig_pending: bool | None = None  # pending MIG mode (applies after reset)
    mig_devices: tuple[MigDevice, ...] = ()
    power_limit_w: float | None = None
    unsupported: tuple[str, ...] = ()

    @property
    def memory_mb(self) -> int:
        return self.memory_bytes // MIB


@dataclass(frozen=True)
class DiskInfo:
    name: str  # kernel name, e.g. "nvme0n1"
    size_bytes: int
    rotational: bool = False
    model: str = ""

    @property
    def size_mb(self) -> int:
        return self.size_bytes // MIB


@dataclass(frozen=True)
class NicInfo:
    name: str
    speed_mbps: int | None = None  # None where the kernel does not know
    mac: str = ""


@dataclass(frozen=True)
class HostInventory:
    hostname: str
    kernel: str
    os: str
    cpu_logical: int
    cpu_physical: int
    memory_total_bytes: int
    swap_total_bytes: int
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()

    @property
    def memory_total_mb(self) -> int:
        return self.memory_total_bytes // MIB

    @property
    def swap_total_mb(self) -> int:
        return self.swap_total_bytes // MIB

    @property
    def disk_total_bytes(self) -> int:
        return sum(d.size_bytes for d in self.disks)

    @property
    def disk_total_mb(self) -> int:
        return sum(d.size_mb for d in self.disks)  # as the cluster document sums its disks


@dataclass(frozen=True)
class NodeInventory:
    node_id: str
    node_name: str
    host: HostInventory | None
    gpus: tuple[GpuInventory, ...] = ()
    driver_version: str = ""
    cuda_driver_version: str = ""  # e.g. "12.4"
    nvml_status: str = "ok"  # "ok", or why GPUs could not be read ("library not found", ...)


# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class NvLinkState:
    link: int
    active: bool


PROCESS_KINDS = ("compute", "graphics", "compute+graphics")


@dataclass(frozen=True)
class GpuProcess:
    """A process with a context on the GPU, as NVML lists it (its owner: `Attribution.owners`)."""

    pid: int  # in the host's PID namespace
    kind: str = "compute"  # one of PROCESS_KINDS
    used_memory_bytes: int | None = None  # None where NVML cannot tell
    # Over the last interval; None where NVML has no per-process figure (not
    # supported, a MIG instance, or no sample of this process in the interval).
    sm_utilization_pct: float | None = None
    memory_utilization_pct: float | None = None
    mig_uuid: str = ""  # the MIG device it runs on; "" for the whole GPU


@dataclass(frozen=True)
class MigSample:
    """One MIG instance's use, where NVML reports it (`unsupported` names the rest)."""

    index: int
    uuid: str
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    utilization_gpu_pct: float | None = None
    unsupported: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    utilization_gpu_pct: float | None = None
    utilization_memory_pct: float | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    throttle_reasons: tuple[str, ...] = ()  # decoded names, e.g. ("sw_thermal_slowdown",)
    ecc_corrected_volatile: int | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_corrected_aggregate: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    retired_pages_pending: bool | None = None
    retired_pages_count: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    pcie_replay_count: int | None = None
    nvlinks: tuple[NvLinkState, ...] = ()
    compute_processes: int | None = None
    lost: bool = False  # the GPU stopped answering (fell off the bus, ...)
    error: str = ""  # the NVML error when the device as a whole could not be read (or the call that hung)
    unsupported: tuple[str, ...] = ()
    processes: tuple[GpuProcess, ...] = ()  # empty where attribution is off
    migs: tuple[MigSample, ...] = ()
    recovery_action: int | None = None  # the driver's nvmlDeviceGpuRecoveryAction_t, where it offers one

    @property
    def memory_total_mb(self) -> int | None:
        return to_mb(self.memory_total_bytes)

    @property
    def memory_used_mb(self) -> int | None:
        return to_mb(self.memory_used_bytes)

    @property
    def memory_free_mb(self) -> int | None:
        return to_mb(self.memory_free_bytes)

    @property
    def memory_reserved_mb(self) -> int | None:
        return to_mb(self.memory_reserved_bytes)


@dataclass(frozen=True)
class NicRate:
    name: str
    tx_bytes_total: int
    rx_bytes_total: int
    tx_bytes_per_s: float | None = None  # None before a second sample exists
    rx_bytes_per_s: float | None = None


@dataclass(frozen=True)
class HostSample:
    cpu_percent: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_available_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    page_faults_per_s: float | None = None
    disk_read_bytes_per_s: float | None = None
    disk_write_bytes_per_s: float | None = None
    disk_read_iops: float | None = None
    disk_write_iops: float | None = None
    disk_busy_pct: float | None = None
    fs_total_bytes: int | None = None  # root filesystem of the host
    fs_used_bytes: int | None = None
    nics: tuple[NicRate, ...] = ()
    tx_bytes_total: int | None = None
    rx_bytes_total: int | None = None
    tx_bytes_per_s: float | None = None
    rx_bytes_per_s: float | None = None
    tx_bytes_per_s_1m: float | None = None
    tx_bytes_per_s_5m: float | None = None
    tx_bytes_per_s_15m: float | None = None
    rx_bytes_per_s_1m: float | None = None
    rx_bytes_per_s_5m: float | None = None
    rx_bytes_per_s_15m: float | None = None
    processes_total: int | None = None
    processes_running: int | None = None
    threads_total: int | None = None

    @property
    def memory_total_mb(self) -> int | None:
        return to_mb(self.memory_total_bytes)

    @property
    def memory_used_mb(self) -> int | None:
        return to_mb(self.memory_used_bytes)

    @property
    def memory_available_mb(self) -> int | None:
        return to_mb(self.memory_available_bytes)

    @property
    def swap_total_mb(self) -> int | None:
        return to_mb(self.swap_total_bytes)

    @property
    def swap_used_mb(self) -> int | None:
        return to_mb(self.swap_used_bytes)

    @property
    def fs_total_mb(self) -> int | None:
        return to_mb(self.fs_total_bytes)

    @property
    def fs_used_mb(self) -> int | None:
        return to_mb(self.fs_used_bytes)


@dataclass(frozen=True)
class CollectorStatus:
    name: str  # "gpu", "host", ...
    success: bool
    duration_s: float
    error: str = ""


HEALTH_KINDS = (
    "xid",  # an XID error event from the driver
    "gpu_lost",  # the GPU fell off the bus / stopped answering
    "gpu_recovered",  # a lost GPU answers again
    "ecc_uncorrectable",  # uncorrectable ECC count went up
    "row_remap_failure",  # row remapping failed (GPU needs service)
    "row_remap_pending",  # a remap is pending (needs a GPU reset)
    "nvml_error",  # a device-level NVML failure that is not "lost"
    "collector_error",  # a collector failed as a whole
    "gpu_unresponsive",  # an NVML call on the GPU did not return within the bound (message names the call)
    "gpu_responsive",  # an unresponsive GPU answers NVML again
)


@dataclass(frozen=True)
class HealthEvent:
    kind: str  # one of HEALTH_KINDS
    timestamp: float  # unix seconds
    gpu_index: int | None = None
    gpu_uuid: str = ""
    xid: int | None = None
    message: str = ""
    nvml_error: str = ""  # NVML's error name, e.g. "NVML_ERROR_GPU_IS_LOST"


# ---------------------------------------------------------------- attribution
# Who is on the node's GPUs: devices the kubelet assigned (pod-resources API),
# and the owner of every GPU process (from the host's /proc/<pid>/cgroup).


@dataclass(frozen=True)
class DeviceAllocation:
    """One device the kubelet assigned to a container."""

    namespace: str
    pod: str
    container: str
    resource: str  # "nvidia.com/gpu", "nvidia.com/mig-1g.10gb", ...; for DRA the driver ("gpu.nvidia.com")
    device_id: str  # as the kubelet names it: a UUID (time-sliced "<uuid>::<n>"), an index, a DRA device name
    gpu_uuid: str = ""  # the GPU it resolves to; "" when it did not resolve
    mig_uuid: str = ""  # the MIG device it resolves to, if any
    claim: str = ""  # DRA: "<namespace>/<name>" of the ResourceClaim


OWNER_SCOPES = (
    "pod",  # a container of a Kubernetes pod (names where they could be told, see docs/attribution.md)
    "container",  # a container Kubernetes does not run (plain docker, ...)
    "host",  # not in a container
    "unknown",  # the process was gone, or its cgroup unreadable
)


@dataclass(frozen=True)
class ProcessOwner:
    """The GPU processes (by pid) that share one owner."""

    scope: str  # one of OWNER_SCOPES
    pids: tuple[int, ...]
    namespace: str = ""
    pod: str = ""
    container: str = ""
    pod_uid: str = ""
    container_id: str = ""
    runtime: str = ""  # "containerd", "cri-o", "docker", where the cgroup path tells


@dataclass(frozen=True)
class ResourceCount:
    resource: str  # e.g. "nvidia.com/gpu"
    allocatable: int  # devices of it the kubelet can hand out


@dataclass(frozen=True)
class Attribution:
    available: bool  # the kubelet's pod-resources API answered
    reason: str = ""  # why not, when unavailable
    refreshed_at: float | None = None  # unix seconds of the last good read of the kubelet
    pods: int = 0  # pods the kubelet listed on the node
    allocations: tuple[DeviceAllocation, ...] = ()
    owners: tuple[ProcessOwner, ...] = ()
    allocatable: tuple[ResourceCount, ...] = ()


@dataclass(frozen=True)
class NodeSample:
    timestamp: float  # unix seconds
    host: HostSample | None
    gpus: tuple[GpuSample, ...] = ()
    collectors: tuple[CollectorStatus, ...] = ()
    health_events: tuple[HealthEvent, ...] = field(default=())
    attribution: Attribution | None = None  # None where the agent does not attribute


# ---------------------------------------------------------------- from the aggregator


@dataclass(frozen=True)
class Acknowledgement:
    """An operator acknowledged a node's GPU problems (see `proto.health.acknowledgements`)."""

    up_to: float  # unix seconds, the events' clock: events at or before it no longer count
    gpu_index: int | None = None  # None: every GPU of the node
    xids: tuple[int, ...] = ()  # (): every kind of event; else only XID events with these codes
    reason: str = ""
