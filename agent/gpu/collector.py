"""The GPU collector: inventory, samples and health of the node's GPUs via NVML.

`open_gpu_collector` is the entry point. It returns a started collector
(`close()` it when done) that:
- reports no GPUs, with `nvml_status` saying why, when NVML cannot start (no
  library, no driver, no GPUs: a CPU node), and tries NVML again every
  `retry_interval_s` (a driver can come up after the agent);
- otherwise reads every GPU through `agent.gpu.nvml_backend`.

Health: a daemon thread (started by `start()`, stopped by `close()`) waits
on NVML's event API for critical XID errors.
With an event listener set (`set_event_listener`, or `on_event` when opening),
each XID goes to the listener the moment it arrives (the agent pushes it to
the aggregator at once) and is NOT repeated in the next `sample()`; without
one, or when the listener raises, it is queued and `sample()` drains the
queue. Either way sampling never waits on events, and each event is delivered
exactly once. The listener runs on the event thread: it must not block.
Device failures become health events on change, not on every sample:
`gpu_lost` / `gpu_recovered`, `nvml_error` (a read failing with anything but
"not supported"), `ecc_uncorrectable` (the volatile uncorrectable count rose),
`row_remap_pending` / `row_remap_failure` (the flag turned on).

Hung NVML: the GPUs' reads run one after the other on a reader thread
(`agent.gpu.bounded`), and `sample()` / `inventory()` wait at most
`call_bound_s` (5 s, `AIOS_NVML_CALL_TIMEOUT_S`) for each GPU. A GPU whose call
has not returned by then is reported with `error` naming the call
("nvmlDevice... did not return within 5 s") and a `gpu_unresponsive` event; it
is not asked again until that call returns (then `gpu_responsive`), and it
keeps its last inventory entry (it is unresponsive, not known to be gone). The
other GPUs (those after it too, in the same sample) and the host keep being
sampled, and a sample waits at most two bounds (`bounded.longest_wait_s`).

The driver's GPU recovery action (NVML field value, R570 and newer) is read
with every sample into `recovery_action`; NotSupported (older drivers) is
remembered like any other unsupported field.

A lost GPU keeps appearing in samples with `lost=True` and `error` set, while
the others keep reporting. It drops out of `inventory().gpus` until it answers
again: the inventory is what the node can offer (it feeds the `gpu.aios/info`
annotation), so a GPU that fell off the bus must not be advertised.

Who is on each GPU (`usage=True`, the default): its processes with their
memory and utilization, and its MIG instances' use (`agent.gpu.usage`), in
the sample's `processes` and `migs`; the compute process count then comes
from the same NVML call. Off (`usage=False`), only the count is read.

Cost: a field NVML reports as not supported is remembered and not asked again
(until the GPU is lost and recovers); NVLink links are discovered once;
identity (name, PCI id, capability, MIG devices) is read for the inventory
only, which is rebuilt when a GPU is lost or recovers, when MIG mode changes,
and every `inventory_refresh_s`.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.gpu.bounded import DEFAULT_BOUND_S, BoundedReader, CallHung, bound_from_env
from agent.gpu.features import describe_capability
from agent.gpu.nvml_backend import (
    NvmlError,
    NvmlEventWaiter,
    NvmlGpuLost,
    NvmlNotSupported,
    NvmlSession,
    NvmlUnavailable,
    open_nvml,
)
from agent.gpu.throttle import decode_clock_event_reasons
from agent.gpu.usage import GpuUsageReader
from agent.sampling.collector import GpuCollector, GpuReport
from proto.health.xid_catalog import describe_xid
from proto.telemetry.v1.readings import (
    GpuInventory,
    GpuSample,
    HealthEvent,
    MigDevice,
    NvLinkState,
)

__all__ = [
    "LIBRARY_ENV",
    "USAGE_ENV",
    "NullGpuCollector",
    "NvmlGpuCollector",
    "RetryingGpuCollector",
    "open_gpu_collector",
    "usage_from_env",
]

log = logging.getLogger(__name__)
LIBRARY_ENV = "AIOS_NVML_LIBRARY"
USAGE_ENV = "AIOS_ATTRIBUTION"  # "off": no process lists or MIG use (and no pod attribution)
_EVENT_WAIT_MS = 200
_MAX_QUEUED_EVENTS = 1000

Clock = Callable[[], float]
EventListener = Callable[[HealthEvent], None]


class NullGpuCollector:
    """No GPUs readable here; `status` says why."""

    name = "gpu"

    def __init__(self, status: str, driver_version: str = "", cuda_driver_version: str = ""):
        self.status = status
        self._report = GpuReport((), driver_version, cuda_driver_version, status)

    def inventory(self) -> GpuReport:
        return self._report

    def sample(self) -> tuple[tuple[GpuSample, ...], tuple[HealthEvent, ...]]:
        return (), ()

    def start(self) -> None:
        pass  # nothing to watch

    def set_event_listener(self, listener: EventListener | None) -> None:
        pass  # no GPUs, no events

    def close(self) -> None:
        pass


# ------------------------------------------------------------- sample reads
# Each group is one NVML call (or a few that fail together) and the GpuSample
# fields it fills; "not supported" is remembered per group.


def _read_memory(nv: NvmlSession, h: Any) -> dict:
    total, used, free, reserved = nv.memory(h)  # bytes, kept as they are (readings.py: sizes)
    return {
        "memory_total_bytes": total,
        "memory_used_bytes": used,
        "memory_free_bytes": free,
        "memory_reserved_bytes": reserved,
    }


def _read_utilization(nv: NvmlSession, h: Any) -> dict:
    gpu, memory = nv.utilization(h)
    return {"utilization_gpu_pct": float(gpu), "utilization_memory_pct": float(memory)}


def _read_remapped_rows(nv: NvmlSession, h: Any) -> dict:
    corr, unc, pending, failure = nv.remapped_rows(h)
    return {
        "remapped_rows_correctable": corr,
        "remapped_rows_uncorrectable": unc,
        "remapped_rows_pending": pending,
        "remapped_rows_failure": failure,
    }


def _read_retired_pages(nv: NvmlSession, h: Any) -> dict:
    count, pending = nv.retired_pages(h)
    return {"retired_pages_count": count, "retired_pages_pending": pending}


@dataclass(frozen=True)
class _Group:
    name: str
    fields: tuple[str, ...]
    read: Callable[[NvmlSession, Any], dict]


def _ecc_group(kind: str, scope: str) -> _Group:
    name = f"ecc_{kind}_{scope}"

    def read(nv: NvmlSession, h: Any) -> dict:
        return {name: nv.ecc_total(h, uncorrected=kind == "uncorrected", aggregate=scope == "aggregate")}

    return _Group(name, (name,), read)


_GROUPS: tuple[_Group, ...] = (
    _Group("memory", ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes", "memory_reserved_bytes"), _read_memory),
    _Group("utilization", ("utilization_gpu_pct", "utilization_memory_pct"), _read_utilization),
    _Group("temperature", ("temperature_c",), lambda nv, h: {"temperature_c": float(nv.temperature_c(h))}),
    _Group("power_draw", ("power_draw_w",), lambda nv, h: {"power_draw_w": nv.power_draw_mw(h) / 1000.0}),
    _Group("power_limit", ("power_limit_w",), lambda nv, h: {"power_limit_w": nv.power_limit_mw(h) / 1000.0}),
    _Group("sm_clock", ("sm_clock_mhz",), lambda nv, h: {"sm_clock_mhz": nv.sm_clock_mhz(h)}),
    _Group("memory_clock", ("memory_clock_mhz",), lambda nv, h: {"memory_clock_mhz": nv.memory_clock_mhz(h)}),
    _Group(
        "throttle_reasons",
        ("throttle_reasons",),
        lambda nv, h: {"throttle_reasons": decode_clock_event_reasons(nv.clock_event_reasons(h))},
    ),
    # one group per ECC counter, so a GPU that lacks one still reports the others
    *(_ecc_group(kind, scope) for scope in ("volatile", "aggregate") for kind in ("corrected", "uncorrected")),
    _Group("retired_pages", ("retired_pages_count", "retired_pages_pending"), _read_retired_pages),
    _Group(
        "remapped_rows",
        (
            "remapped_rows_correctable",
            "remapped_rows_uncorrectable",
            "remapped_rows_pending",
            "remapped_rows_failure",
        ),
        _read_remapped_rows,
    ),
    _Group("pcie_replay", ("pcie_replay_count",), lambda nv, h: {"pcie_replay_count": nv.pcie_replay_count(h)}),
    _Group(
        "compute_processes",
        ("compute_processes",),
        lambda nv, h: {"compute_processes": nv.compute_process_count(h)},
    ),
    _Group("recovery_action", ("recovery_action",), lambda nv, h: {"recovery_action": nv.recovery_action(h)}),
)


@dataclass
class _GpuState:
    """What the collector remembers about one GPU between samples."""

    index: int
    handle: Any = None
    uuid: str = ""
    lost: bool = False
    lost_error: str = ""
    device_error: str = ""  # NVML error when nothing on the device answered
    unsupported_groups: set[str] = field(default_factory=set)
    unsupported_fields: tuple[str, ...] = ()
    nvlinks: tuple[int, ...] | None = None  # None until discovered
    field_errors: dict[str, str] = field(default_factory=dict)
    ecc_uncorrected_volatile: int | None = None
    remap_pending: bool = False
    remap_failure: bool = False
    mig_mode: tuple[bool, bool] | None = None
    registered_for_events: bool = False
    unresponsive: str = ""  # "<call> did not return within N s" while an NVML call on it hangs
    last_inventory: GpuInventory | None = None
    usage: GpuUsageReader | None = None  # who is on the GPU; None until first read (or usage off)

    def forget_capabilities(self) -> None:
        self.unsupported_groups.clear()
        self.unsupported_fields = ()
        self.nvlinks = None
        self.field_errors.clear()
        self.usage = None


class NvmlGpuCollector:
    """Reads the GPUs of an initialized NVML session. `start()` attaches the GPUs and
    starts the XID event thread (the `RetryingGpuCollector` of `open_gpu_collector` does it)."""

    name = "gpu"

    def __init__(
        self,
        session: NvmlSession,
        *,
        clock: Clock = time.time,
        inventory_refresh_s: float = 300.0,
        event_wait_ms: int = _EVENT_WAIT_MS,
        on_event: EventListener | None = None,
        call_bound_s: float = DEFAULT_BOUND_S,
        usage: bool = True,
    ):
        self._nv = session
        self._usage = usage
        # with usage on, the process list gives the compute process count too
        self._groups = tuple(g for g in _GROUPS if not (usage and g.name == "compute_processes"))
        self._listener = on_event
        self._clock = clock
        self._inventory_refresh_s = inventory_refresh_s
        self.call_bound_s = call_bound_s
        self._reader = BoundedReader("nvml-reader", call_bound_s)
        self._lock = threading.RLock()
        self._events: collections.deque[HealthEvent] = collections.deque(maxlen=_MAX_QUEUED_EVENTS)
        self._driver_version = session.driver_version()
        self._cuda_driver_version = _or_empty(session.cuda_driver_version)
        self._report: GpuReport | None = None
        self._report_at = 0.0
        self._stop = threading.Event()
        self._event_wait_ms = event_wait_ms
        self._waiter: NvmlEventWaiter | None = None
        self._thread: threading.Thread | None = None
        self._by_key: dict[int, _GpuState] = {}
        self._gpus = [_GpuState(i) for i in range(session.device_count())]

    def start(self) -> None:
        """Attach every GPU (bounded: a hung one is reported, not waited for) and watch NVML events
        (XIDs) on a thread of its own; once."""
        with self._lock:
            if self._thread is not None or self._waiter is not None or self._stop.is_set():
                return
            self._for_each_gpu(self._attach, lambda gpu: False)
            self._start_event_thread(self._event_wait_ms)

    # ------------------------------------------------------------ inventory

    def inventory(self) -> GpuReport:
        with self._lock:
            now = self._clock()
            if self._report is None or now - self._report_at >= self._inventory_refresh_s:
                self._report = self._read_inventory()
                self._report_at = now
            return self._report

    def _read_inventory(self) -> GpuReport:
        # a GPU whose NVML call hangs keeps its last entry: unresponsive is not known to be gone
        found = self._for_each_gpu(self._inventory_entry, lambda gpu: None if gpu.lost else gpu.last_inventory)
        gpus = tuple(entry for entry in found if entry is not None)
        return GpuReport(gpus, self._driver_version, self._cuda_driver_version, "ok")

    def _inventory_entry(self, gpu: _GpuState) -> GpuInventory | None:
        if gpu.usage is not None:
            gpu.usage.forget_migs()  # MIG instances may have been created or destroyed
        if gpu.lost or gpu.handle is None:
            return None
        try:
            gpu.last_inventory = self._read_gpu_inventory(gpu)
            return gpu.last_inventory
        except NvmlGpuLost as exc:
            self._mark_lost(gpu, exc)
        except NvmlError as exc:
            # Identity unreadable: report it, keep the GPU out of the inventory.
            self._note_device_error(gpu, exc.name)
        return None

    def _read_gpu_inventory(self, gpu: _GpuState) -> GpuInventory:
        nv, h = self._nv, gpu.handle
        unsupported: list[str] = []

        def optional(field_name: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except NvmlNotSupported:
                unsupported.append(field_name)
                return None

        gpu.uuid = nv.uuid(h)
        name = nv.name(h)
        total = optional("memory_bytes", lambda: nv.memory(h)[0])
        pci = optional("pci_bus_id", lambda: nv.pci_bus_id(h))
        cc = optional("compute_capability", lambda: nv.compute_capability(h))
        facts = describe_capability(cc)
        mig = optional("mig_enabled", lambda: nv.mig_mode(h))
        gpu.mig_mode = mig
        migs: tuple[MigDevice, ...] = ()
        if mig is not None and mig[0]:
            found = optional("mig_devices", lambda: nv.mig_devices(h)) or ()
            migs = tuple(MigDevice(m.index, m.uuid, m.memory_bytes, _mig_profile(m.name)) for m in found)
        limit = optional("power_limit_w", lambda: nv.power_limit_mw(h) / 1000.0)
        return GpuInventory(
            index=gpu.index,
            uuid=gpu.uuid,
            name=name,
            memory_bytes=0 if total is None else total,
            pci_bus_id=pci or "",
            compute_capability=cc,
            architecture=facts.architecture,
            features=facts.features,
            mig_enabled=None if mig is None else mig[0],
            mig_pending=None if mig is None else mig[1],
            mig_devices=migs,
            power_limit_w=limit,
            unsupported=tuple(unsupported),
        )

    def _invalidate_inventory(self) -> None:
        self._report = None

    # --------------------------------------------------------------- sample

    def sample(self) -> tuple[tuple[GpuSample, ...], tuple[HealthEvent, ...]]:
        with self._lock:
            samples = tuple(self._for_each_gpu(self._sample_gpu, self._unresponsive_sample))
            events = []
            while self._events:
                events.append(self._events.popleft())
            return samples, tuple(events)

    def _for_each_gpu(self, work: Callable[[_GpuState], Any], unanswered: Callable[[_GpuState], Any]) -> list:
        """`work(gpu)` for every GPU, in order on the reader thread, waiting at most `call_bound_s`
        for each. A GPU that does not answer in time gives `unanswered(gpu)`."""
        results = self._reader.run([(gpu.index, functools.partial(work, gpu)) for gpu in self._gpus])
        for i, (gpu, value) in enumerate(zip(self._gpus, results)):
            if isinstance(value, CallHung):
                self._note_unresponsive(gpu, value)
                results[i] = unanswered(gpu)
            else:
                self._note_responsive(gpu)
        return results

    def _unresponsive_sample(self, gpu: _GpuState) -> GpuSample:
        return GpuSample(gpu.index, gpu.uuid, lost=gpu.lost, error=gpu.lost_error or gpu.unresponsive)

    def _sample_gpu(self, gpu: _GpuState) -> GpuSample:
        if gpu.handle is None and not self._attach(gpu):
            return GpuSample(gpu.index, gpu.uuid, lost=gpu.lost, error=gpu.lost_error or gpu.device_error)
        nv, h = self._nv, gpu.handle
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        attempted = 0
        try:
            for group in self._groups:
                if group.name in gpu.unsupported_groups:
                    continue
                attempted += 1
                try:
                    values.update(group.read(nv, h))
                except NvmlNotSupported:
                    self._mark_unsupported(gpu, group.name, group.fields)
                except NvmlGpuLost:
                    raise
                except NvmlError as exc:
                    errors[group.name] = exc.name
            if "nvlinks" not in gpu.unsupported_groups:
                attempted += 1
                try:
                    values["nvlinks"] = self._read_nvlinks(gpu)
                except NvmlNotSupported:
                    self._mark_unsupported(gpu, "nvlinks", ("nvlinks",))
                except NvmlGpuLost:
                    raise
                except NvmlError as exc:
                    errors["nvlinks"] = exc.name
            if values.get("memory_reserved_bytes", 0) is None and "memory_reserved" not in gpu.unsupported_groups:
                # The driver has only the v1 memory call, which has no reserved figure.
                self._mark_unsupported(gpu, "memory_reserved", ("memory_reserved_bytes",))
            self._check_mig_mode(gpu)
            if self._usage and "processes" not in gpu.unsupported_groups:
                attempted += 1  # after the MIG mode check: the usage reader needs the current mode
                try:
                    values.update(self._read_usage(gpu))
                except NvmlNotSupported:
                    self._mark_unsupported(gpu, "processes", ("compute_processes", "processes"))
                except NvmlGpuLost:
                    raise
                except NvmlError as exc:
                    errors["processes"] = exc.name
        except NvmlGpuLost as exc:
            self._mark_lost(gpu, exc)
            return GpuSample(gpu.index, gpu.uuid, lost=True, error=gpu.lost_error)
        if gpu.lost:
            self._mark_recovered(gpu)
        if errors and len(errors) == attempted:
            # Nothing on the device answered: one device-level error, not one per field.
            self._note_device_error(gpu, next(iter(errors.values())))
            gpu.field_errors = {}
        else:
            self._note_device_error(gpu, "")
            self._note_field_errors(gpu, errors)
        self._note_health_counters(gpu, values)
        return GpuSample(
            gpu.index, gpu.uuid, unsupported=gpu.unsupported_fields, error=gpu.device_error, **values
        )

    def _read_usage(self, gpu: _GpuState) -> dict:
        if gpu.usage is None:
            gpu.usage = GpuUsageReader(self._nv, gpu.handle)
        values = gpu.usage.read(bool(gpu.mig_mode and gpu.mig_mode[0]))
        new = gpu.usage.unsupported - set(gpu.unsupported_fields)
        if new:
            gpu.unsupported_fields = tuple(sorted(set(gpu.unsupported_fields) | new))
        return values

    def _read_nvlinks(self, gpu: _GpuState) -> tuple[NvLinkState, ...]:
        if gpu.nvlinks is None:
            gpu.nvlinks = self._nv.nvlink_links(gpu.handle)
        states = self._nv.nvlink_active(gpu.handle, gpu.nvlinks)
        return tuple(_link_state(link, up) for link, up in zip(gpu.nvlinks, states))

    def _check_mig_mode(self, gpu: _GpuState) -> None:
        if gpu.mig_mode is None and "mig" in gpu.unsupported_groups:
            return
        try:
            mode = self._nv.mig_mode(gpu.handle)
        except NvmlNotSupported:
            gpu.unsupported_groups.add("mig")
            return
        except NvmlGpuLost:
            raise
        except NvmlError:
            return  # the identity read will report it
        if mode != gpu.mig_mode:
            gpu.mig_mode = mode
            if gpu.usage is not None:
                gpu.usage.forget_migs()
            self._invalidate_inventory()

    def _mark_unsupported(self, gpu: _GpuState, group: str, fields: tuple[str, ...]) -> None:
        gpu.unsupported_groups.add(group)
        gpu.unsupported_fields = tuple(sorted(set(gpu.unsupported_fields) | set(fields)))

    # --------------------------------------------------------------- health

    def _health(self, kind: str, gpu: _GpuState | None, message: str, nvml_error: str = "", xid=None) -> None:
        """Queue an event found while sampling (it goes out with this sample)."""
        self._events.append(self._event(kind, gpu, message, nvml_error, xid))

    def _event(self, kind: str, gpu: _GpuState | None, message: str, nvml_error: str = "", xid=None) -> HealthEvent:
        return HealthEvent(
            kind=kind,
            timestamp=self._clock(),
            gpu_index=None if gpu is None else gpu.index,
            gpu_uuid="" if gpu is None else gpu.uuid,
            xid=xid,
            message=message,
            nvml_error=nvml_error,
        )

    def _note_unresponsive(self, gpu: _GpuState, hung: CallHung) -> None:
        # the bound, not the time waited so far: the wording stays the same while it hangs
        text = f"{hung.call} did not return within {self.call_bound_s:g} s"
        if text != gpu.unresponsive:
            if not gpu.unresponsive:
                log.warning("GPU %d (%s): %s; sampling the other GPUs without it", gpu.index, gpu.uuid, text)
            gpu.unresponsive = text
            self._health("gpu_unresponsive", gpu, f"GPU {gpu.index} {gpu.uuid} stopped answering NVML: {text}")

    def _note_responsive(self, gpu: _GpuState) -> None:
        if gpu.unresponsive:
            log.info("GPU %d (%s) answers NVML again", gpu.index, gpu.uuid)
            gpu.unresponsive = ""
            self._health("gpu_responsive", gpu, f"GPU {gpu.index} {gpu.uuid} answers NVML again")

    def _mark_lost(self, gpu: _GpuState, exc: NvmlError) -> None:
        if not gpu.lost:
            gpu.lost = True
            gpu.lost_error = exc.name
            gpu.forget_capabilities()  # what comes back may be a different board
            self._health("gpu_lost", gpu, f"GPU {gpu.index} {gpu.uuid} stopped answering", exc.name)
            self._invalidate_inventory()

    def _mark_recovered(self, gpu: _GpuState) -> None:
        gpu.lost = False
        gpu.lost_error = ""
        self._health("gpu_recovered", gpu, f"GPU {gpu.index} {gpu.uuid} answers again")
        self._invalidate_inventory()
        self._register_events(gpu)

    def _note_device_error(self, gpu: _GpuState, name: str) -> None:
        if name and name != gpu.device_error:
            self._health("nvml_error", gpu, f"GPU {gpu.index} could not be read", name)
        gpu.device_error = name

    def _note_field_errors(self, gpu: _GpuState, errors: dict[str, str]) -> None:
        for group, name in errors.items():
            if gpu.field_errors.get(group) != name:
                self._health("nvml_error", gpu, f"reading {group} of GPU {gpu.index} failed", name)
        gpu.field_errors = errors

    def _note_health_counters(self, gpu: _GpuState, values: dict[str, Any]) -> None:
        unc = values.get("ecc_uncorrected_volatile")
        if unc is not None:
            before = gpu.ecc_uncorrected_volatile or 0
            if unc > before:
                self._health(
                    "ecc_uncorrectable",
                    gpu,
                    f"uncorrectable ECC errors on GPU {gpu.index} rose from {before} to {unc}",
                )
            gpu.ecc_uncorrected_volatile = unc
        pending = values.get("remapped_rows_pending")
        if pending is not None:
            if pending and not gpu.remap_pending:
                self._health("row_remap_pending", gpu, f"GPU {gpu.index} has a row remap pending: reset it")
            gpu.remap_pending = pending
        failure = values.get("remapped_rows_failure")
        if failure is not None:
            if failure and not gpu.remap_failure:
                self._health("row_remap_failure", gpu, f"row remapping failed on GPU {gpu.index}: it needs service")
            gpu.remap_failure = failure

    # -------------------------------------------------------------- devices

    def _attach(self, gpu: _GpuState) -> bool:
        """Get the GPU's handle (and its UUID); False while it cannot be reached."""
        try:
            gpu.handle = self._nv.handle(gpu.index)
            gpu.uuid = self._nv.uuid(gpu.handle)
        except NvmlGpuLost as exc:
            gpu.handle = None
            self._mark_lost(gpu, exc)
            return False
        except NvmlError as exc:
            gpu.handle = None
            self._note_device_error(gpu, exc.name)
            return False
        by_key = dict(self._by_key)
        by_key[NvmlSession.device_key(gpu.handle)] = gpu
        self._by_key = by_key  # replaced whole: the event thread reads it unlocked
        if gpu.lost:
            self._mark_recovered(gpu)
        return True

    # --------------------------------------------------------------- events

    def _start_event_thread(self, wait_ms: int) -> None:
        if not self._gpus:
            return
        try:
            waiter = self._waiter = self._nv.event_waiter()
        except NvmlError as exc:
            log.warning("NVML events unavailable, XID errors will not be reported: %s", exc.name)
            return
        for gpu in self._gpus:
            self._register_events(gpu)
        self._thread = threading.Thread(target=self._wait_events, args=(waiter, wait_ms), name="nvml-events", daemon=True)
        self._thread.start()

    def _register_events(self, gpu: _GpuState) -> None:
        if self._waiter is None or gpu.handle is None or gpu.registered_for_events:
            return
        try:
            self._waiter.register(gpu.handle)
            gpu.registered_for_events = True
        except NvmlNotSupported:
            log.info("GPU %d does not report XID events", gpu.index)
        except NvmlError as exc:
            log.warning("cannot watch GPU %d for XID errors: %s", gpu.index, exc.name)

    def _wait_events(self, waiter: NvmlEventWaiter, wait_ms: int) -> None:
        last_error = ""
        while not self._stop.is_set():
            try:
                event = waiter.wait(wait_ms)
            except NvmlError as exc:
                if exc.name != last_error:
                    log.warning("waiting for NVML events failed: %s", exc.name)
                    last_error = exc.name
                self._stop.wait(1.0)
                continue
            last_error = ""
            if event is None:
                continue
            gpu = self._by_key.get(event.device_key)
            self._deliver(self._event("xid", gpu, describe_xid(event.xid), xid=event.xid))

    def set_event_listener(self, listener: EventListener | None) -> None:
        """Send XID events to `listener` as they arrive (None: queue them for `sample()`)."""
        self._listener = listener

    def _deliver(self, event: HealthEvent) -> None:
        listener = self._listener
        if listener is not None:
            try:
                listener(event)
                return
            except Exception:
                log.exception("health event listener failed; the event goes with the next sample")
        self._events.append(event)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        hung = sorted(self._reader.stuck())
        self._reader.close()
        if hung:
            # nvmlShutdown would wait on the driver that never answered: leave it to the process exit
            log.warning("GPU(s) %s still inside an NVML call: NVML is not shut down", hung)
            return
        if self._waiter is not None:
            self._waiter.close()
        self._nv.close()


class RetryingGpuCollector:
    """Wraps an opener: while NVML is unavailable, reports why and retries."""

    name = "gpu"

    def __init__(
        self,
        opener: Callable[[], GpuCollector],
        *,
        clock: Clock,
        retry_interval_s: float,
        on_event: EventListener | None = None,
    ):
        self._opener = opener
        self._listener = on_event
        self._clock = clock
        self._retry_interval_s = retry_interval_s
        self._lock = threading.Lock()
        self._current: GpuCollector = NullGpuCollector("not started")
        self._live = False
        self._next_try = clock()
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Open NVML now (and again every `retry_interval_s` while it is unavailable)."""
        with self._lock:
            self._started = True
        self._try_open()

    def _try_open(self) -> None:
        with self._lock:
            if not self._started or self._live or self._closed or self._clock() < self._next_try:
                return
            self._next_try = self._clock() + self._retry_interval_s
            try:
                self._current = self._opener()
            except NvmlUnavailable as exc:
                if exc.status != self._current.inventory().nvml_status:
                    log.info("no GPUs readable: %s", exc.status)
                self._current = NullGpuCollector(exc.status)
                return
            self._live = not isinstance(self._current, NullGpuCollector)
            if self._listener is not None:
                self._current.set_event_listener(self._listener)
            self._current.start()

    def set_event_listener(self, listener: EventListener | None) -> None:
        """Applies to the live collector now and to one opened later."""
        with self._lock:
            self._listener = listener
            self._current.set_event_listener(listener)

    def inventory(self) -> GpuReport:
        self._try_open()
        return self._current.inventory()

    def sample(self) -> tuple[tuple[GpuSample, ...], tuple[HealthEvent, ...]]:
        self._try_open()
        return self._current.sample()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._current.close()
            self._current = NullGpuCollector("closed")


def _open_live(
    library_path: str | None, clock: Clock, call_bound_s: float = DEFAULT_BOUND_S, usage: bool = True
) -> GpuCollector:
    session = open_nvml(library_path)
    try:
        if session.device_count() == 0:
            driver = _or_empty(session.driver_version)
            cuda = _or_empty(session.cuda_driver_version)
            session.close()
            return NullGpuCollector("no GPUs", driver, cuda)
        return NvmlGpuCollector(session, clock=clock, call_bound_s=call_bound_s, usage=usage)  # started by its wrapper
    except NvmlError as exc:
        session.close()
        raise NvmlUnavailable(exc.code, exc.name, f"nvml failed: {exc.name}") from exc


def open_gpu_collector(
    *,
    library_path: str | None = None,
    clock: Clock = time.time,
    retry_interval_s: float = 60.0,
    on_event: EventListener | None = None,
    call_bound_s: float | None = None,
    usage: bool | None = None,
) -> GpuCollector:
    """The node's GPU collector; library_path defaults to $AIOS_NVML_LIBRARY, call_bound_s
    to $AIOS_NVML_CALL_TIMEOUT_S (else 5 s).

    `on_event`: where XID events go as they arrive (see the module docstring);
    can also be set later with `.set_event_listener`. `usage`: read who is on
    each GPU (processes, MIG use); default on unless $AIOS_ATTRIBUTION is "off".
    """
    if library_path is None:
        library_path = os.environ.get(LIBRARY_ENV) or None
    bound = bound_from_env() if call_bound_s is None else call_bound_s
    if usage is None:
        usage = usage_from_env(os.environ)
    collector = RetryingGpuCollector(
        lambda: _open_live(library_path, clock, bound, usage),
        clock=clock,
        retry_interval_s=retry_interval_s,
        on_event=on_event,
    )
    collector.start()
    return collector


def usage_from_env(env) -> bool:
    """$AIOS_ATTRIBUTION: "on" (the default) or "off"."""
    value = (env.get(USAGE_ENV) or "on").strip().lower()
    if value not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f"{USAGE_ENV}={value!r}: expected on or off")
    return value in ("on", "true", "1")


@functools.lru_cache(maxsize=256)
def _link_state(link: int, active: bool) -> NvLinkState:
    """Shared immutable NvLinkState values: a sample builds many of them."""
    return NvLinkState(link, active)


def _or_empty(read: Callable[[], str]) -> str:
    try:
        return read()
    except NvmlError:
        return ""


def _mig_profile(name: str) -> str:
    """"NVIDIA A100-SXM4-80GB MIG 3g.40gb" -> "3g.40gb"."""
    _, sep, profile = name.rpartition(" MIG ")
    return profile.strip() if sep else ""
