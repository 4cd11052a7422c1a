"""The one module that talks to pynvml: a narrow, typed interface over NVML.

pynvml raises one `NVMLError` subclass per NVML error code; here they become
a small hierarchy the collector can act on:

  NvmlError            any NVML failure (carries `.code` and `.name`, the
  ├─ NvmlUnavailable     NVML_ERROR_* name), raised by `open_nvml` when
  ├─ NvmlNotSupported    NVML cannot start; a field the device lacks;
  └─ NvmlGpuLost         the GPU fell off the bus / stopped answering.

Every call through `_call` is noted as in flight for its thread while it runs
(`call_in_flight`), so a caller that stopped waiting for a call that never
returned can name it (`agent.gpu.bounded`).

pynvml loads `libnvidia-ml.so.1` once per process and keeps it. A library at
an explicit path (AIOS_NVML_LIBRARY) is preloaded with `ctypes` first; the
dynamic loader then resolves pynvml's own `CDLL("libnvidia-ml.so.1")` to it
by its soname.

Process lists (`running_processes`, `process_utilization`) call NVML's C
functions through pynvml's function pointers and decode the returned array
with one `struct.iter_unpack`, into a buffer kept per device: pynvml's own
wrappers build a Python object per process, which at 8 GPUs x 64 processes
costs more than the rest of a sample.
"""

from __future__ import annotations

import ctypes
import operator
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "STATUS_OK",
    "MigHandle",
    "MigInfo",
    "NvmlError",
    "NvmlEventWaiter",
    "NvmlGpuLost",
    "NvmlNotSupported",
    "NvmlSession",
    "NvmlUnavailable",
    "ProcessEntry",
    "UtilizationSample",
    "XidEvent",
    "call_in_flight",
    "open_nvml",
]

T = TypeVar("T")
STATUS_OK = "ok"

try:  # nvidia-ml-py is a dependency; its absence is still only "no GPUs".
    import pynvml as _nv
except ImportError:  # pragma: no cover - exercised only where it is missing
    _nv = None


class NvmlError(Exception):
    """An NVML call failed. `name` is NVML's, e.g. "NVML_ERROR_UNKNOWN"."""

    def __init__(self, code: int, name: str, message: str = ""):
        super().__init__(message or name)
        self.code = code
        self.name = name


class NvmlUnavailable(NvmlError):
    """NVML cannot start here; `status` says why in the agent's words."""

    def __init__(self, code: int, name: str, status: str):
        super().__init__(code, name, status)
        self.status = status


class NvmlNotSupported(NvmlError):
    pass


class NvmlGpuLost(NvmlError):
    pass


def _error_names() -> dict[int, str]:
    if _nv is None:
        return {}
    return {getattr(_nv, n): n for n in dir(_nv) if n.startswith("NVML_ERROR_")}


_ERROR_NAMES = _error_names()


def _translate(exc: Exception) -> NvmlError:
    code = int(getattr(exc, "value", -1))
    name = _ERROR_NAMES.get(code, f"NVML_ERROR_{code}")
    # A function the installed driver's library lacks is, to us, a field it
    # does not support.
    if code in (getattr(_nv, "NVML_ERROR_NOT_SUPPORTED", None), getattr(_nv, "NVML_ERROR_FUNCTION_NOT_FOUND", None)):
        return NvmlNotSupported(code, name)
    if code == getattr(_nv, "NVML_ERROR_GPU_IS_LOST", None):
        return NvmlGpuLost(code, name)
    return NvmlError(code, name, f"{name}: {exc}")


# thread ident -> the NVML function that thread is in (one dict write each way per call: ~0.1 us)
_IN_FLIGHT: dict[int, str] = {}


def call_in_flight(thread_ident: int | None) -> str | None:
    """The NVML function the thread is inside now, or None."""
    return None if thread_ident is None else _IN_FLIGHT.get(thread_ident)



def _existing_mig_handles(handle: Any) -> Iterator[tuple[int, Any]]:
    """(index, handle) of each MIG device slot that holds a device now; empty slots are skipped."""
    for index in range(_call(_nv.nvmlDeviceGetMaxMigDeviceCount, handle)):
        try:
            yield index, _call(_nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, index)
        except NvmlError as exc:
            if exc.name not in ("NVML_ERROR_NOT_FOUND", "NVML_ERROR_INVALID_ARGUMENT"):
                raise

def _call(fn: Callable[..., T], *args: Any) -> T:
    ident = threading.get_ident()
    _IN_FLIGHT[ident] = getattr(fn, "__name__", "nvml")
    try:
        return fn(*args)
    except _nv.NVMLError as exc:
        raise _translate(exc) from exc
    finally:
        _IN_FLIGHT.pop(ident, None)


# Init failures, in the words `nvml_status` uses.
_INIT_STATUS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "library not found",
    "NVML_ERROR_DRIVER_NOT_LOADED": "driver not loaded",
    "NVML_ERROR_NO_PERMISSION": "no permission to the GPU devices",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "driver and NVML library versions differ",
}

_preload_lock = threading.Lock()
_preloaded: dict[str, ctypes.CDLL] = {}


def _preload(library_path: str) -> None:
    with _preload_lock:
        if library_path in _preloaded:
            return
        if not os.path.isabs(library_path) or not os.path.exists(library_path):
            raise NvmlUnavailable(-1, "NVML_ERROR_LIBRARY_NOT_FOUND", f"library not found: {library_path}")
        try:
            _preloaded[library_path] = ctypes.CDLL(library_path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise NvmlUnavailable(
                -1, "NVML_ERROR_LIBRARY_NOT_FOUND", f"library not found: {library_path}: {exc}"
            ) from exc


@dataclass(frozen=True)
class MigInfo:
    index: int
    uuid: str
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class MigHandle:
    index: int
    uuid: str
    handle: Any
    gpu_instance_id: int | None  # None where NVML does not say


# (pid, used memory bytes or None, GPU instance id, compute instance id); the
# ids are 0xFFFFFFFF on a GPU without MIG.
ProcessEntry = tuple[int, "int | None", int, int]
# nvmlProcessUtilizationSample_t as a tuple: (pid, timestamp us, SM %, memory %, encoder %, decoder %)
UtilizationSample = tuple[int, int, int, int, int, int]

_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE_ulonglong
# nvmlProcessInfo_t (v2/v3) and nvmlProcessUtilizationSample_t, native layout
# (checked against pynvml's ctypes structures in `_Lister.__init__`)
_PROCESS_INFO = struct.Struct("=I4xQII")
_UTIL_SAMPLE = struct.Struct("=I4xQIIII")
_TIMESTAMP = operator.itemgetter(1)


class _Lister:
    """One NVML "fill this array" call, with a reusable buffer per device.

    Called with the buffer's size first: NVML fills it and says how many it
    wrote, or answers INSUFFICIENT_SIZE with the count it needs, and the
    buffer grows (x2 + 5, as pynvml does) for one more try.
    """

    def __init__(self, function: str, ctype_name: str, layout: struct.Struct):
        self._function = function
        self._ctype: Any = getattr(_nv, ctype_name, None)
        self._layout = layout
        if self._ctype is None or ctypes.sizeof(self._ctype) != layout.size:
            raise NvmlNotSupported(-1, "NVML_ERROR_FUNCTION_NOT_FOUND", f"{ctype_name}: unexpected layout")
        self._fn: Any = None
        self._buffers: dict[int, Any] = {}

    def _pointer(self) -> Any:
        if self._fn is None:
            try:
                self._fn = _nv._nvmlGetFunctionPointer(self._function)
            except _nv.NVMLError as exc:
                raise _translate(exc) from exc
        return self._fn

    def fill(self, handle: Any, *extra: Any) -> tuple[bytes, int, int]:
        """(the raw array, entries NVML wrote, NVML's return code: 0 or NOT_FOUND)."""
        fn = self._pointer()
        key = NvmlSession.device_key(handle)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = (self._ctype * 16)()
        count = ctypes.c_uint(len(buffer))
        for _ in range(3):
            ret = self._call(fn, handle, buffer, count, extra)
            if ret != _nv.NVML_ERROR_INSUFFICIENT_SIZE:
                break
            buffer = self._buffers[key] = (self._ctype * (count.value * 2 + 5))()
            count = ctypes.c_uint(len(buffer))
        if ret == _nv.NVML_ERROR_NOT_FOUND:
            return b"", 0, ret
        if ret != _nv.NVML_SUCCESS:
            raise _translate(_nv.NVMLError(ret))
        n = min(count.value, len(buffer))
        return ctypes.string_at(buffer, n * self._layout.size), n, ret

    @staticmethod
    def _call(fn: Any, handle: Any, buffer: Any, count: ctypes.c_uint, extra: tuple) -> int:
        return fn(handle, ctypes.byref(count), buffer)

    def forget(self, handle: Any) -> None:
        self._buffers.pop(NvmlSession.device_key(handle), None)


class _UtilizationLister(_Lister):
    @staticmethod
    def _call(fn: Any, handle: Any, buffer: Any, count: ctypes.c_uint, extra: tuple) -> int:
        # nvmlDeviceGetProcessUtilization(device, samples, *count, lastSeenTimeStamp)
        return fn(handle, buffer, ctypes.byref(count), ctypes.c_ulonglong(extra[0]))


@dataclass(frozen=True)
class XidEvent:
    device_key: int  # NvmlSession.device_key of the device it happened on
    xid: int


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class NvmlSession:
    """An initialized NVML. Device handles are opaque; pass them back in."""

    def __init__(self) -> None:
        # Decided by the first read: drivers and pynvml releases differ.
        self._memory_v2: bool | None = None if hasattr(_nv, "nvmlMemory_v2") else False
        self._clock_reasons = getattr(_nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._listers: dict[str, _Lister] = {}
        self._closed = False

    # ---------------------------------------------------------- system

    def driver_version(self) -> str:
        return _text(_call(_nv.nvmlSystemGetDriverVersion))

    def cuda_driver_version(self) -> str:
        """"12.4" from NVML's 12040."""
        version = _call(_nv.nvmlSystemGetCudaDriverVersion)
        return f"{version // 1000}.{(version % 1000) // 10}"

    def device_count(self) -> int:
        return _call(_nv.nvmlDeviceGetCount)

    def handle(self, index: int) -> Any:
        return _call(_nv.nvmlDeviceGetHandleByIndex, index)

    @staticmethod
    def device_key(handle: Any) -> int:
        """A hashable identity for a handle (its address)."""
        return ctypes.cast(handle, ctypes.c_void_p).value or 0

    # -------------------------------------------------------- identity

    def name(self, handle: Any) -> str:
        return _text(_call(_nv.nvmlDeviceGetName, handle))

    def uuid(self, handle: Any) -> str:
        return _text(_call(_nv.nvmlDeviceGetUUID, handle))

    def pci_bus_id(self, handle: Any) -> str:
        return _text(_call(_nv.nvmlDeviceGetPciInfo, handle).busId)

    def compute_capability(self, handle: Any) -> tuple[int, int]:
        major, minor = _call(_nv.nvmlDeviceGetCudaComputeCapability, handle)
        return int(major), int(minor)

    def mig_mode(self, handle: Any) -> tuple[bool, bool]:
        current, pending = _call(_nv.nvmlDeviceGetMigMode, handle)
        return bool(current), bool(pending)

    def mig_devices(self, handle: Any) -> tuple[MigInfo, ...]:
        """The MIG devices that exist now (indexes without one are skipped)."""
        found = []
        for index, mig in _existing_mig_handles(handle):
            memory = _call(_nv.nvmlDeviceGetMemoryInfo, mig)
            found.append(MigInfo(index, self.uuid(mig), self.name(mig), int(memory.total)))
        return tuple(found)

    # ---------------------------------------------------------- sample

    def memory(self, handle: Any) -> tuple[int, int, int, int | None]:
        """(total, used, free, reserved) bytes; reserved None where NVML has no v2 call."""
        if self._memory_v2 is not False:
            try:
                m = _call(_nv.nvmlDeviceGetMemoryInfo, handle, _nv.nvmlMemory_v2)
                self._memory_v2 = True
                return int(m.total), int(m.used), int(m.free), int(m.reserved)
            except NvmlError as exc:
                if isinstance(exc, NvmlGpuLost) or self._memory_v2:
                    raise
                self._memory_v2 = False  # older driver: fall back for good
        m = _call(_nv.nvmlDeviceGetMemoryInfo, handle)
        return int(m.total), int(m.used), int(m.free), None

    def utilization(self, handle: Any) -> tuple[int, int]:
        u = _call(_nv.nvmlDeviceGetUtilizationRates, handle)
        return int(u.gpu), int(u.memory)

    def temperature_c(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetTemperature, handle, _nv.NVML_TEMPERATURE_GPU)

    def power_draw_mw(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetPowerUsage, handle)

    def power_limit_mw(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetPowerManagementLimit, handle)

    def sm_clock_mhz(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetClockInfo, handle, _nv.NVML_CLOCK_SM)

    def memory_clock_mhz(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetClockInfo, handle, _nv.NVML_CLOCK_MEM)

    def clock_event_reasons(self, handle: Any) -> int:
        """The clock-event ("throttle") reason bits; older drivers only have the throttle name."""
        if self._clock_reasons is not None:
            try:
                return _call(self._clock_reasons, handle)
            except NvmlNotSupported as exc:
                if exc.name != "NVML_ERROR_FUNCTION_NOT_FOUND":
                    raise
                self._clock_reasons = None
        return _call(_nv.nvmlDeviceGetCurrentClocksThrottleReasons, handle)

    def ecc_total(self, handle: Any, *, uncorrected: bool, aggregate: bool) -> int:
        error_type = _nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED if uncorrected else _nv.NVML_MEMORY_ERROR_TYPE_CORRECTED
        counter = _nv.NVML_AGGREGATE_ECC if aggregate else _nv.NVML_VOLATILE_ECC
        return _call(_nv.nvmlDeviceGetTotalEccErrors, handle, error_type, counter)

    def retired_pages(self, handle: Any) -> tuple[int, bool]:
        """(pages retired for either cause, retirement pending)."""
        count = 0
        for cause in (
            _nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
            _nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
        ):
            count += len(_call(_nv.nvmlDeviceGetRetiredPages, handle, cause))
        pending = _call(_nv.nvmlDeviceGetRetiredPagesPendingStatus, handle)
        return count, bool(pending)

    def remapped_rows(self, handle: Any) -> tuple[int, int, bool, bool]:
        """(correctable, uncorrectable, pending, failure)."""
        corr, unc, pending, failure = _call(_nv.nvmlDeviceGetRemappedRows, handle)
        return int(corr), int(unc), bool(pending), bool(failure)

    def pcie_replay_count(self, handle: Any) -> int:
        return _call(_nv.nvmlDeviceGetPcieReplayCounter, handle)

    def nvlink_links(self, handle: Any) -> tuple[int, ...]:
        """The NVLink links this device has (those answering a state query)."""
        links: list[int] = []
        for link in range(_nv.NVML_NVLINK_MAX_LINKS):
            try:
                _call(_nv.nvmlDeviceGetNvLinkState, handle, link)
            except NvmlNotSupported:
                if not links and link == 0:
                    raise  # no NVLink at all
                continue
            except NvmlError as exc:
                if exc.name == "NVML_ERROR_INVALID_ARGUMENT":
                    continue
                raise
            links.append(link)
        return tuple(links)

    def nvlink_active(self, handle: Any, links: tuple[int, ...]) -> tuple[bool, ...]:
        """Whether each of the given links is up, in the same order."""
        get_state = _nv.nvmlDeviceGetNvLinkState
        ident = threading.get_ident()
        _IN_FLIGHT[ident] = "nvmlDeviceGetNvLinkState"
        try:
            return tuple(bool(get_state(handle, link)) for link in links)
        except _nv.NVMLError as exc:
            raise _translate(exc) from exc
        finally:
            _IN_FLIGHT.pop(ident, None)

    def recovery_action(self, handle: Any) -> int:
        """The driver's GPU recovery action (nvmlDeviceGpuRecoveryAction_t: 0 none, 1 GPU reset,
        2 node reboot, ...). NotSupported on drivers without the field (before R570): normal."""
        field_id = getattr(_nv, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", None)
        if field_id is None:
            raise NvmlNotSupported(-1, "NVML_ERROR_NOT_SUPPORTED", "pynvml has no recovery-action field")
        (value,) = _call(_nv.nvmlDeviceGetFieldValues, handle, [field_id])
        if value.nvmlReturn != 0:
            raise _translate(_nv.NVMLError(value.nvmlReturn))
        return int(value.value.uiVal)

    def compute_process_count(self, handle: Any) -> int:
        return len(self.running_processes(handle))

    # ---------------------------------------------------- who is on it

    def _lister(self, function: str, ctype_name: str, layout: struct.Struct, cls: type[_Lister] = _Lister) -> _Lister:
        lister = self._listers.get(function)
        if lister is None:
            lister = self._listers[function] = cls(function, ctype_name, layout)
        return lister

    def running_processes(self, handle: Any, *, graphics: bool = False) -> list[ProcessEntry]:
        """The device's compute (or graphics) processes: [(pid, used bytes or None, GI id, CI id)]."""
        function = "nvmlDeviceGetGraphicsRunningProcesses_v3" if graphics else "nvmlDeviceGetComputeRunningProcesses_v3"
        raw, n, _ = self._lister(function, "c_nvmlProcessInfo_v3_t", _PROCESS_INFO).fill(handle)
        rows = list(_PROCESS_INFO.iter_unpack(raw[: n * _PROCESS_INFO.size]))
        for row in rows:
            if row[1] == _NOT_AVAILABLE:  # rare (NVML cannot tell): only then build new rows
                return [(pid, None if used == _NOT_AVAILABLE else used, gi, ci) for pid, used, gi, ci in rows]
        return rows

    def process_utilization(self, handle: Any, since_us: int) -> tuple[dict[int, UtilizationSample], int]:
        """{pid: (pid, timestamp, SM %, memory %, encoder %, decoder %)} from NVML's per-process
        samples newer than `since_us` (NVML's CPU timestamp, microseconds), and the newest
        sample's timestamp. NVML returns one sample per process that ran since then; none is an
        empty dict, not an error."""
        lister = self._lister(
            "nvmlDeviceGetProcessUtilization", "c_nvmlProcessUtilizationSample_t", _UTIL_SAMPLE, _UtilizationLister
        )
        raw, n, _ = lister.fill(handle, since_us)
        if not n:
            return {}, since_us
        rows = list(_UTIL_SAMPLE.iter_unpack(raw[: n * _UTIL_SAMPLE.size]))
        newest = max(since_us, max(map(_TIMESTAMP, rows)))
        return {row[0]: row for row in rows}, newest

    def mig_handles(self, handle: Any) -> tuple[MigHandle, ...]:
        """Handles of the MIG devices that exist now, with their GPU instance ids."""
        found = []
        for index, mig in _existing_mig_handles(handle):
            try:
                gi: int | None = int(_call(_nv.nvmlDeviceGetGpuInstanceId, mig))
            except NvmlNotSupported:
                gi = None
            found.append(MigHandle(index, self.uuid(mig), mig, gi))
        return tuple(found)

    # ---------------------------------------------------------- events

    def event_waiter(self) -> NvmlEventWaiter:
        return NvmlEventWaiter(_call(_nv.nvmlEventSetCreate))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                _call(_nv.nvmlShutdown)
            except NvmlError:
                pass  # shutting down: nothing left to do with the error


class NvmlEventWaiter:
    """An NVML event set for critical XID errors."""

    def __init__(self, event_set: Any):
        self._set = event_set

    def register(self, handle: Any) -> None:
        _call(_nv.nvmlDeviceRegisterEvents, handle, _nv.nvmlEventTypeXidCriticalError, self._set)

    def wait(self, timeout_ms: int) -> XidEvent | None:
        """The next XID, or None when none came within the timeout."""
        try:
            data = _call(_nv.nvmlEventSetWait, self._set, timeout_ms)
        except NvmlError as exc:
            if exc.name == "NVML_ERROR_TIMEOUT":
                return None
            raise
        if not data.eventType & _nv.nvmlEventTypeXidCriticalError:
            return None
        return XidEvent(NvmlSession.device_key(data.device), int(data.eventData))

    def close(self) -> None:
        try:
            _call(_nv.nvmlEventSetFree, self._set)
        except NvmlError:
            pass  # the set dies with the process anyway


def open_nvml(library_path: str | None = None) -> NvmlSession:
    """Initialize NVML, or raise NvmlUnavailable saying why not.

    Safe to call again after a failure: pynvml keeps nothing from a failed
    library load, and a failed init leaves the library loaded but unused.
    """
    if _nv is None:
        raise NvmlUnavailable(-1, "NVML_ERROR_LIBRARY_NOT_FOUND", "pynvml (nvidia-ml-py) is not installed")
    if library_path:
        _preload(library_path)
    try:
        _nv.nvmlInitWithFlags(0)
    except _nv.NVMLError as exc:
        err = _translate(exc)
        status = _INIT_STATUS.get(err.name, f"nvml init failed: {err.name}")
        raise NvmlUnavailable(err.code, err.name, status) from exc
    return NvmlSession()
