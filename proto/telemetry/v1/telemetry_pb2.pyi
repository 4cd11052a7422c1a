from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    NODE_STATUS_HEALTHY: _ClassVar[NodeStatus]
    NODE_STATUS_UNHEALTHY: _ClassVar[NodeStatus]
    NODE_STATUS_STALE: _ClassVar[NodeStatus]
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_HEALTHY: NodeStatus
NODE_STATUS_UNHEALTHY: NodeStatus
NODE_STATUS_STALE: NodeStatus

class MigDevice(_message.Message):
    __slots__ = ("index", "uuid", "memory_mb", "profile", "memory_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    memory_mb: int
    profile: str
    memory_bytes: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., memory_mb: _Optional[int] = ..., profile: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class GpuInventory(_message.Message):
    __slots__ = ("index", "uuid", "name", "memory_mb", "pci_bus_id", "compute_capability_major", "compute_capability_minor", "architecture", "features", "mig_enabled", "mig_pending", "mig_devices", "power_limit_w", "unsupported", "memory_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_MAJOR_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_MINOR_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MIG_ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIG_PENDING_FIELD_NUMBER: _ClassVar[int]
    MIG_DEVICES_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_W_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    memory_mb: int
    pci_bus_id: str
    compute_capability_major: int
    compute_capability_minor: int
    architecture: str
    features: _containers.RepeatedScalarFieldContainer[str]
    mig_enabled: bool
    mig_pending: bool
    mig_devices: _containers.RepeatedCompositeFieldContainer[MigDevice]
    power_limit_w: float
    unsupported: _containers.RepeatedScalarFieldContainer[str]
    memory_bytes: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., pci_bus_id: _Optional[str] = ..., compute_capability_major: _Optional[int] = ..., compute_capability_minor: _Optional[int] = ..., architecture: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., mig_enabled: _Optional[bool] = ..., mig_pending: _Optional[bool] = ..., mig_devices: _Optional[_Iterable[_Union[MigDevice, _Mapping]]] = ..., power_limit_w: _Optional[float] = ..., unsupported: _Optional[_Iterable[str]] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class DiskInfo(_message.Message):
    __slots__ = ("name", "size_mb", "rotational", "model", "size_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    ROTATIONAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_mb: int
    rotational: bool
    model: str
    size_bytes: int
    def __init__(self, name: _Optional[str] = ..., size_mb: _Optional[int] = ..., rotational: _Optional[bool] = ..., model: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class NicInfo(_message.Message):
    __slots__ = ("name", "speed_mbps", "mac")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEED_MBPS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    name: str
    speed_mbps: int
    mac: str
    def __init__(self, name: _Optional[str] = ..., speed_mbps: _Optional[int] = ..., mac: _Optional[str] = ...) -> None: ...

class HostInventory(_message.Message):
    __slots__ = ("hostname", "kernel", "os", "cpu_logical", "cpu_physical", "memory_total_mb", "swap_total_mb", "disks", "nics", "memory_total_bytes", "swap_total_bytes")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    CPU_LOGICAL_FIELD_NUMBER: _ClassVar[int]
    CPU_PHYSICAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    NICS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    kernel: str
    os: str
    cpu_logical: int
    cpu_physical: int
    memory_total_mb: int
    swap_total_mb: int
    disks: _containers.RepeatedCompositeFieldContainer[DiskInfo]
    nics: _containers.RepeatedCompositeFieldContainer[NicInfo]
    memory_total_bytes: int
    swap_total_bytes: int
    def __init__(self, hostname: _Optional[str] = ..., kernel: _Optional[str] = ..., os: _Optional[str] = ..., cpu_logical: _Optional[int] = ..., cpu_physical: _Optional[int] = ..., memory_total_mb: _Optional[int] = ..., swap_total_mb: _Optional[int] = ..., disks: _Optional[_Iterable[_Union[DiskInfo, _Mapping]]] = ..., nics: _Optional[_Iterable[_Union[NicInfo, _Mapping]]] = ..., memory_total_bytes: _Optional[int] = ..., swap_total_bytes: _Optional[int] = ...) -> None: ...

class NodeInventory(_message.Message):
    __slots__ = ("node_id", "node_name", "host", "gpus", "driver_version", "cuda_driver_version", "nvml_status")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    NVML_STATUS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    host: HostInventory
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInventory]
    driver_version: str
    cuda_driver_version: str
    nvml_status: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., host: _Optional[_Union[HostInventory, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuInventory, _Mapping]]] = ..., driver_version: _Optional[str] = ..., cuda_driver_version: _Optional[str] = ..., nvml_status: _Optional[str] = ...) -> None: ...

class NvLinkState(_message.Message):
    __slots__ = ("link", "active")
    LINK_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    link: int
    active: bool
    def __init__(self, link: _Optional[int] = ..., active: _Optional[bool] = ...) -> None: ...

class GpuSample(_message.Message):
    __slots__ = ("index", "uuid", "utilization_gpu_pct", "utilization_memory_pct", "memory_total_mb", "memory_used_mb", "memory_free_mb", "memory_reserved_mb", "temperature_c", "power_draw_w", "power_limit_w", "sm_clock_mhz", "memory_clock_mhz", "throttle_reasons", "ecc_corrected_volatile", "ecc_uncorrected_volatile", "ecc_corrected_aggregate", "ecc_uncorrected_aggregate", "retired_pages_pending", "retired_pages_count", "remapped_rows_pending", "remapped_rows_failure", "remapped_rows_correctable", "remapped_rows_uncorrectable", "pcie_replay_count", "nvlinks", "compute_processes", "lost", "error", "unsupported", "processes", "migs", "recovery_action", "memory_total_bytes", "memory_used_bytes", "memory_free_bytes", "memory_reserved_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_GPU_PCT_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_MEMORY_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RESERVED_MB_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_DRAW_W_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_W_FIELD_NUMBER: _ClassVar[int]
    SM_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_REASONS_FIELD_NUMBER: _ClassVar[int]
    ECC_CORRECTED_VOLATILE_FIELD_NUMBER: _ClassVar[int]
    ECC_UNCORRECTED_VOLATILE_FIELD_NUMBER: _ClassVar[int]
    ECC_CORRECTED_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    ECC_UNCORRECTED_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    RETIRED_PAGES_PENDING_FIELD_NUMBER: _ClassVar[int]
    RETIRED_PAGES_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_PENDING_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_FAILURE_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_CORRECTABLE_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_UNCORRECTABLE_FIELD_NUMBER: _ClassVar[int]
    PCIE_REPLAY_COUNT_FIELD_NUMBER: _ClassVar[int]
    NVLINKS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    MIGS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_ACTION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    utilization_gpu_pct: float
    utilization_memory_pct: float
    memory_total_mb: int
    memory_used_mb: int
    memory_free_mb: int
    memory_reserved_mb: int
    temperature_c: float
    power_draw_w: float
    power_limit_w: float
    sm_clock_mhz: int
    memory_clock_mhz: int
    throttle_reasons: _containers.RepeatedScalarFieldContainer[str]
    ecc_corrected_volatile: int
    ecc_uncorrected_volatile: int
    ecc_corrected_aggregate: int
    ecc_uncorrected_aggregate: int
    retired_pages_pending: bool
    retired_pages_count: int
    remapped_rows_pending: bool
    remapped_rows_failure: bool
    remapped_rows_correctable: int
    remapped_rows_uncorrectable: int
    pcie_replay_count: int
    nvlinks: _containers.RepeatedCompositeFieldContainer[NvLinkState]
    compute_processes: int
    lost: bool
    error: str
    unsupported: _containers.RepeatedScalarFieldContainer[str]
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    migs: _containers.RepeatedCompositeFieldContainer[MigSample]
    recovery_action: int
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    memory_reserved_bytes: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., utilization_gpu_pct: _Optional[float] = ..., utilization_memory_pct: _Optional[float] = ..., memory_total_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., memory_reserved_mb: _Optional[int] = ..., temperature_c: _Optional[float] = ..., power_draw_w: _Optional[float] = ..., power_limit_w: _Optional[float] = ..., sm_clock_mhz: _Optional[int] = ..., memory_clock_mhz: _Optional[int] = ..., throttle_reasons: _Optional[_Iterable[str]] = ..., ecc_corrected_volatile: _Optional[int] = ..., ecc_uncorrected_volatile: _Optional[int] = ..., ecc_corrected_aggregate: _Optional[int] = ..., ecc_uncorrected_aggregate: _Optional[int] = ..., retired_pages_pending: _Optional[bool] = ..., retired_pages_count: _Optional[int] = ..., remapped_rows_pending: _Optional[bool] = ..., remapped_rows_failure: _Optional[bool] = ..., remapped_rows_correctable: _Optional[int] = ..., remapped_rows_uncorrectable: _Optional[int] = ..., pcie_replay_count: _Optional[int] = ..., nvlinks: _Optional[_Iterable[_Union[NvLinkState, _Mapping]]] = ..., compute_processes: _Optional[int] = ..., lost: _Optional[bool] = ..., error: _Optional[str] = ..., unsupported: _Optional[_Iterable[str]] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ..., migs: _Optional[_Iterable[_Union[MigSample, _Mapping]]] = ..., recovery_action: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_free_bytes: _Optional[int] = ..., memory_reserved_bytes: _Optional[int] = ...) -> None: ...

class GpuProcess(_message.Message):
    __slots__ = ("pid", "kind", "used_memory_bytes", "sm_utilization_pct", "memory_utilization_pct", "mig_uuid")
    PID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SM_UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MIG_UUID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    kind: str
    used_memory_bytes: int
    sm_utilization_pct: float
    memory_utilization_pct: float
    mig_uuid: str
    def __init__(self, pid: _Optional[int] = ..., kind: _Optional[str] = ..., used_memory_bytes: _Optional[int] = ..., sm_utilization_pct: _Optional[float] = ..., memory_utilization_pct: _Optional[float] = ..., mig_uuid: _Optional[str] = ...) -> None: ...

class MigSample(_message.Message):
    __slots__ = ("index", "uuid", "memory_total_bytes", "memory_used_bytes", "utilization_gpu_pct", "unsupported")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_GPU_PCT_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_gpu_pct: float
    unsupported: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., utilization_gpu_pct: _Optional[float] = ..., unsupported: _Optional[_Iterable[str]] = ...) -> None: ...

class NicRate(_message.Message):
    __slots__ = ("name", "tx_bytes_total", "rx_bytes_total", "tx_bytes_per_s", "rx_bytes_per_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    tx_bytes_total: int
    rx_bytes_total: int
    tx_bytes_per_s: float
    rx_bytes_per_s: float
    def __init__(self, name: _Optional[str] = ..., tx_bytes_total: _Optional[int] = ..., rx_bytes_total: _Optional[int] = ..., tx_bytes_per_s: _Optional[float] = ..., rx_bytes_per_s: _Optional[float] = ...) -> None: ...

class HostSample(_message.Message):
    __slots__ = ("cpu_percent", "load1", "load5", "load15", "memory_total_mb", "memory_used_mb", "memory_available_mb", "swap_total_mb", "swap_used_mb", "page_faults_per_s", "disk_read_bytes_per_s", "disk_write_bytes_per_s", "disk_read_iops", "disk_write_iops", "disk_busy_pct", "fs_total_mb", "fs_used_mb", "nics", "tx_bytes_total", "rx_bytes_total", "tx_bytes_per_s", "rx_bytes_per_s", "tx_bytes_per_s_1m", "tx_bytes_per_s_5m", "tx_bytes_per_s_15m", "rx_bytes_per_s_1m", "rx_bytes_per_s_5m", "rx_bytes_per_s_15m", "processes_total", "processes_running", "threads_total", "memory_total_bytes", "memory_used_bytes", "memory_available_bytes", "swap_total_bytes", "swap_used_bytes", "fs_total_bytes", "fs_used_bytes")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_MB_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    SWAP_USED_MB_FIELD_NUMBER: _ClassVar[int]
    PAGE_FAULTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_IOPS_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_IOPS_FIELD_NUMBER: _ClassVar[int]
    DISK_BUSY_PCT_FIELD_NUMBER: _ClassVar[int]
    FS_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    FS_USED_MB_FIELD_NUMBER: _ClassVar[int]
    NICS_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_1M_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_5M_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_15M_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_1M_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_5M_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_15M_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_RUNNING_FIELD_NUMBER: _ClassVar[int]
    THREADS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FS_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FS_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    load1: float
    load5: float
    load15: float
    memory_total_mb: int
    memory_used_mb: int
    memory_available_mb: int
    swap_total_mb: int
    swap_used_mb: int
    page_faults_per_s: float
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    disk_read_iops: float
    disk_write_iops: float
    disk_busy_pct: float
    fs_total_mb: int
    fs_used_mb: int
    nics: _containers.RepeatedCompositeFieldContainer[NicRate]
    tx_bytes_total: int
    rx_bytes_total: int
    tx_bytes_per_s: float
    rx_bytes_per_s: float
    tx_bytes_per_s_1m: float
    tx_bytes_per_s_5m: float
    tx_bytes_per_s_15m: float
    rx_bytes_per_s_1m: float
    rx_bytes_per_s_5m: float
    rx_bytes_per_s_15m: float
    processes_total: int
    processes_running: int
    threads_total: int
    memory_total_bytes: int
    memory_used_bytes: int
    memory_available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    fs_total_bytes: int
    fs_used_bytes: int
    def __init__(self, cpu_percent: _Optional[float] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., memory_total_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., memory_available_mb: _Optional[int] = ..., swap_total_mb: _Optional[int] = ..., swap_used_mb: _Optional[int] = ..., page_faults_per_s: _Optional[float] = ..., disk_read_bytes_per_s: _Optional[float] = ..., disk_write_bytes_per_s: _Optional[float] = ..., disk_read_iops: _Optional[float] = ..., disk_write_iops: _Optional[float] = ..., disk_busy_pct: _Optional[float] = ..., fs_total_mb: _Optional[int] = ..., fs_used_mb: _Optional[int] = ..., nics: _Optional[_Iterable[_Union[NicRate, _Mapping]]] = ..., tx_bytes_total: _Optional[int] = ..., rx_bytes_total: _Optional[int] = ..., tx_bytes_per_s: _Optional[float] = ..., rx_bytes_per_s: _Optional[float] = ..., tx_bytes_per_s_1m: _Optional[float] = ..., tx_bytes_per_s_5m: _Optional[float] = ..., tx_bytes_per_s_15m: _Optional[float] = ..., rx_bytes_per_s_1m: _Optional[float] = ..., rx_bytes_per_s_5m: _Optional[float] = ..., rx_bytes_per_s_15m: _Optional[float] = ..., processes_total: _Optional[int] = ..., processes_running: _Optional[int] = ..., threads_total: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., swap_total_bytes: _Optional[int] = ..., swap_used_bytes: _Optional[int] = ..., fs_total_bytes: _Optional[int] = ..., fs_used_bytes: _Optional[int] = ...) -> None: ...

class CollectorStatus(_message.Message):
    __slots__ = ("name", "success", "duration_s", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    success: bool
    duration_s: float
    error: str
    def __init__(self, name: _Optional[str] = ..., success: _Optional[bool] = ..., duration_s: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class HealthEvent(_message.Message):
    __slots__ = ("kind", "timestamp", "gpu_index", "gpu_uuid", "xid", "message", "nvml_error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NVML_ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    timestamp: float
    gpu_index: int
    gpu_uuid: str
    xid: int
    message: str
    nvml_error: str
    def __init__(self, kind: _Optional[str] = ..., timestamp: _Optional[float] = ..., gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., xid: _Optional[int] = ..., message: _Optional[str] = ..., nvml_error: _Optional[str] = ...) -> None: ...

class NodeSample(_message.Message):
    __slots__ = ("timestamp", "host", "gpus", "collectors", "attribution")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    timestamp: float
    host: HostSample
    gpus: _containers.RepeatedCompositeFieldContainer[GpuSample]
    collectors: _containers.RepeatedCompositeFieldContainer[CollectorStatus]
    attribution: Attribution
    def __init__(self, timestamp: _Optional[float] = ..., host: _Optional[_Union[HostSample, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuSample, _Mapping]]] = ..., collectors: _Optional[_Iterable[_Union[CollectorStatus, _Mapping]]] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ...) -> None: ...

class DeviceAllocation(_message.Message):
    __slots__ = ("namespace", "pod", "container", "resource", "device_id", "gpu_uuid", "mig_uuid", "claim")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    MIG_UUID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str
    gpu_uuid: str
    mig_uuid: str
    claim: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., resource: _Optional[str] = ..., device_id: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., mig_uuid: _Optional[str] = ..., claim: _Optional[str] = ...) -> None: ...

class ProcessOwner(_message.Message):
    __slots__ = ("scope", "pids", "namespace", "pod", "container", "pod_uid", "container_id", "runtime")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    scope: str
    pids: _containers.RepeatedScalarFieldContainer[int]
    namespace: str
    pod: str
    container: str
    pod_uid: str
    container_id: str
    runtime: str
    def __init__(self, scope: _Optional[str] = ..., pids: _Optional[_Iterable[int]] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., pod_uid: _Optional[str] = ..., container_id: _Optional[str] = ..., runtime: _Optional[str] = ...) -> None: ...

class ResourceCount(_message.Message):
    __slots__ = ("resource", "allocatable")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    resource: str
    allocatable: int
    def __init__(self, resource: _Optional[str] = ..., allocatable: _Optional[int] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("available", "reason", "refreshed_at", "pods", "allocations", "owners", "allocatable")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_AT_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    available: bool
    reason: str
    refreshed_at: float
    pods: int
    allocations: _containers.RepeatedCompositeFieldContainer[DeviceAllocation]
    owners: _containers.RepeatedCompositeFieldContainer[ProcessOwner]
    allocatable: _containers.RepeatedCompositeFieldContainer[ResourceCount]
    def __init__(self, available: _Optional[bool] = ..., reason: _Optional[str] = ..., refreshed_at: _Optional[float] = ..., pods: _Optional[int] = ..., allocations: _Optional[_Iterable[_Union[DeviceAllocation, _Mapping]]] = ..., owners: _Optional[_Iterable[_Union[ProcessOwner, _Mapping]]] = ..., allocatable: _Optional[_Iterable[_Union[ResourceCount, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "cluster_id", "agent_version", "agent_instance", "inventory", "interval_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_id: str
    agent_version: str
    agent_instance: str
    inventory: NodeInventory
    interval_s: float
    def __init__(self, node_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., agent_instance: _Optional[str] = ..., inventory: _Optional[_Union[NodeInventory, _Mapping]] = ..., interval_s: _Optional[float] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("seq", "hello", "sample", "health", "inventory", "dropped_samples")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hello: Hello
    sample: NodeSample
    health: HealthEvent
    inventory: NodeInventory
    dropped_samples: int
    def __init__(self, seq: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., sample: _Optional[_Union[NodeSample, _Mapping]] = ..., health: _Optional[_Union[HealthEvent, _Mapping]] = ..., inventory: _Optional[_Union[NodeInventory, _Mapping]] = ..., dropped_samples: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("acked_seq",)
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    def __init__(self, acked_seq: _Optional[int] = ...) -> None: ...

class Instruction(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("seq", "reason")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: str
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Acknowledgement(_message.Message):
    __slots__ = ("gpu_index", "up_to", "xids", "reason")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    XIDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    up_to: float
    xids: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, gpu_index: _Optional[int] = ..., up_to: _Optional[float] = ..., xids: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class AggregatorMessage(_message.Message):
    __slots__ = ("ack", "instruction", "refusal", "acknowledgement")
    ACK_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    instruction: Instruction
    refusal: Refusal
    acknowledgement: Acknowledgement
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ..., instruction: _Optional[_Union[Instruction, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., acknowledgement: _Optional[_Union[Acknowledgement, _Mapping]] = ...) -> None: ...

class RollingFigures(_message.Message):
    __slots__ = ("cpu_percent_1m", "cpu_percent_5m", "cpu_percent_15m", "gpu_utilization_pct_1m", "gpu_utilization_pct_5m", "gpu_utilization_pct_15m", "memory_used_pct_1m", "memory_used_pct_5m", "memory_used_pct_15m")
    CPU_PERCENT_1M_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_5M_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_15M_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_PCT_1M_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_PCT_5M_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_PCT_15M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_PCT_1M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_PCT_5M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_PCT_15M_FIELD_NUMBER: _ClassVar[int]
    cpu_percent_1m: float
    cpu_percent_5m: float
    cpu_percent_15m: float
    gpu_utilization_pct_1m: float
    gpu_utilization_pct_5m: float
    gpu_utilization_pct_15m: float
    memory_used_pct_1m: float
    memory_used_pct_5m: float
    memory_used_pct_15m: float
    def __init__(self, cpu_percent_1m: _Optional[float] = ..., cpu_percent_5m: _Optional[float] = ..., cpu_percent_15m: _Optional[float] = ..., gpu_utilization_pct_1m: _Optional[float] = ..., gpu_utilization_pct_5m: _Optional[float] = ..., gpu_utilization_pct_15m: _Optional[float] = ..., memory_used_pct_1m: _Optional[float] = ..., memory_used_pct_5m: _Optional[float] = ..., memory_used_pct_15m: _Optional[float] = ...) -> None: ...

class NodeSummary(_message.Message):
    __slots__ = ("node_id", "node_name", "status", "last_seen", "gpu_count", "gpu_memory_mb", "cpu_percent", "gpu_utilization_pct", "agent_version", "open_health_events", "quarantine")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPEN_HEALTH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    status: NodeStatus
    last_seen: float
    gpu_count: int
    gpu_memory_mb: int
    cpu_percent: float
    gpu_utilization_pct: float
    agent_version: str
    open_health_events: int
    quarantine: NodeQuarantine
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., status: _Optional[_Union[NodeStatus, str]] = ..., last_seen: _Optional[float] = ..., gpu_count: _Optional[int] = ..., gpu_memory_mb: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., gpu_utilization_pct: _Optional[float] = ..., agent_version: _Optional[str] = ..., open_health_events: _Optional[int] = ..., quarantine: _Optional[_Union[NodeQuarantine, _Mapping]] = ...) -> None: ...

class NodeQuarantine(_message.Message):
    __slots__ = ("state", "reason", "detail", "since", "mode", "gpus")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    state: str
    reason: str
    detail: str
    since: float
    mode: str
    gpus: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, state: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., since: _Optional[float] = ..., mode: _Optional[str] = ..., gpus: _Optional[_Iterable[int]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeSummary]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeSummary, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id", "max_health_events")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_HEALTH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    max_health_events: int
    def __init__(self, node_id: _Optional[str] = ..., max_health_events: _Optional[int] = ...) -> None: ...

class NodeDetail(_message.Message):
    __slots__ = ("summary", "inventory", "latest_sample", "rolling", "health_events")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    LATEST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ROLLING_FIELD_NUMBER: _ClassVar[int]
    HEALTH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    summary: NodeSummary
    inventory: NodeInventory
    latest_sample: NodeSample
    rolling: RollingFigures
    health_events: _containers.RepeatedCompositeFieldContainer[HealthEvent]
    def __init__(self, summary: _Optional[_Union[NodeSummary, _Mapping]] = ..., inventory: _Optional[_Union[NodeInventory, _Mapping]] = ..., latest_sample: _Optional[_Union[NodeSample, _Mapping]] = ..., rolling: _Optional[_Union[RollingFigures, _Mapping]] = ..., health_events: _Optional[_Iterable[_Union[HealthEvent, _Mapping]]] = ...) -> None: ...

class ClusterSummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterSummary(_message.Message):
    __slots__ = ("cluster_id", "nodes_total", "nodes_healthy", "nodes_unhealthy", "nodes_stale", "gpus_total", "gpu_memory_total_mb", "vcpus_total", "memory_total_mb", "avg_cpu_percent", "avg_gpu_utilization_pct", "avg_memory_used_pct", "samples_received")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NODES_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    NODES_UNHEALTHY_FIELD_NUMBER: _ClassVar[int]
    NODES_STALE_FIELD_NUMBER: _ClassVar[int]
    GPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    VCPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    AVG_CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AVG_GPU_UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    AVG_MEMORY_USED_PCT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    nodes_total: int
    nodes_healthy: int
    nodes_unhealthy: int
    nodes_stale: int
    gpus_total: int
    gpu_memory_total_mb: int
    vcpus_total: int
    memory_total_mb: int
    avg_cpu_percent: float
    avg_gpu_utilization_pct: float
    avg_memory_used_pct: float
    samples_received: int
    def __init__(self, cluster_id: _Optional[str] = ..., nodes_total: _Optional[int] = ..., nodes_healthy: _Optional[int] = ..., nodes_unhealthy: _Optional[int] = ..., nodes_stale: _Optional[int] = ..., gpus_total: _Optional[int] = ..., gpu_memory_total_mb: _Optional[int] = ..., vcpus_total: _Optional[int] = ..., memory_total_mb: _Optional[int] = ..., avg_cpu_percent: _Optional[float] = ..., avg_gpu_utilization_pct: _Optional[float] = ..., avg_memory_used_pct: _Optional[float] = ..., samples_received: _Optional[int] = ...) -> None: ...

class WatchNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeChange(_message.Message):
    __slots__ = ("kind", "node", "health", "timestamp")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[NodeChange.Kind]
        KIND_JOINED: _ClassVar[NodeChange.Kind]
        KIND_STATUS: _ClassVar[NodeChange.Kind]
        KIND_INVENTORY: _ClassVar[NodeChange.Kind]
        KIND_HEALTH: _ClassVar[NodeChange.Kind]
        KIND_REMOVED: _ClassVar[NodeChange.Kind]
    KIND_UNSPECIFIED: NodeChange.Kind
    KIND_JOINED: NodeChange.Kind
    KIND_STATUS: NodeChange.Kind
    KIND_INVENTORY: NodeChange.Kind
    KIND_HEALTH: NodeChange.Kind
    KIND_REMOVED: NodeChange.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    kind: NodeChange.Kind
    node: NodeSummary
    health: HealthEvent
    timestamp: float
    def __init__(self, kind: _Optional[_Union[NodeChange.Kind, str]] = ..., node: _Optional[_Union[NodeSummary, _Mapping]] = ..., health: _Optional[_Union[HealthEvent, _Mapping]] = ..., timestamp: _Optional[float] = ...) -> None: ...

class PodGpusRequest(_message.Message):
    __slots__ = ("namespace", "pod")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ...) -> None: ...

class GpuPodsRequest(_message.Message):
    __slots__ = ("gpu_uuid", "node_id", "gpu_index")
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    gpu_uuid: str
    node_id: str
    gpu_index: int
    def __init__(self, gpu_uuid: _Optional[str] = ..., node_id: _Optional[str] = ..., gpu_index: _Optional[int] = ...) -> None: ...

class GpuUse(_message.Message):
    __slots__ = ("node_id", "gpu_index", "gpu_uuid", "mig_uuid", "namespace", "pod", "container", "allocated", "pids", "used_memory_bytes", "resource", "claim", "pod_uid")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    MIG_UUID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    gpu_index: int
    gpu_uuid: str
    mig_uuid: str
    namespace: str
    pod: str
    container: str
    allocated: bool
    pids: _containers.RepeatedScalarFieldContainer[int]
    used_memory_bytes: int
    resource: str
    claim: str
    pod_uid: str
    def __init__(self, node_id: _Optional[str] = ..., gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., mig_uuid: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., allocated: _Optional[bool] = ..., pids: _Optional[_Iterable[int]] = ..., used_memory_bytes: _Optional[int] = ..., resource: _Optional[str] = ..., claim: _Optional[str] = ..., pod_uid: _Optional[str] = ...) -> None: ...

class GpuUsesResponse(_message.Message):
    __slots__ = ("uses",)
    USES_FIELD_NUMBER: _ClassVar[int]
    uses: _containers.RepeatedCompositeFieldContainer[GpuUse]
    def __init__(self, uses: _Optional[_Iterable[_Union[GpuUse, _Mapping]]] = ...) -> None: ...
