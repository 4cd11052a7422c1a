"""Who is on one GPU, as NVML sees it: its processes and its MIG instances' use.

`GpuUsageReader` belongs to one GPU handle and fills the `GpuSample` fields
`compute_processes`, `processes` and `migs`:

- processes: NVML's compute and graphics lists merged by pid (a pid in both
  is "compute+graphics"), with the memory NVML charges to each (None where
  it says "not available"), the MIG device it runs on (from its GPU instance
  id), and per-process SM and memory utilization averaged over NVML's samples
  since the previous read. "Not supported" is normal for the graphics list
  and for per-process utilization (nvml.h: never on MIG-enabled GPUs): it is
  remembered and not asked again, and named in `unsupported` as
  "graphics_processes" / "process_utilization";
- MIG instances (when MIG mode is on): each instance's memory total and used,
  and utilization where NVML answers (not on today's MIG devices: listed in
  the instance's `unsupported`). Instance handles are found once and again
  after `forget_migs()` (the collector calls it when MIG mode changes and at
  every inventory refresh, when instances may have been created or destroyed).

Cost: a sample builds a `GpuProcess` only for a process whose reading
changed; unchanged ones are the previous sample's objects.
"""

from __future__ import annotations

from typing import Any

from agent.gpu.nvml_backend import (
    MigHandle,
    NvmlError,
    NvmlGpuLost,
    NvmlNotSupported,
    NvmlSession,
    ProcessEntry,
    UtilizationSample,
)
from proto.telemetry.v1.readings import GpuProcess, MigSample

__all__ = ["GpuUsageReader"]

_KIND = {1: "compute", 2: "graphics", 3: "compute+graphics"}


class GpuUsageReader:
    def __init__(self, session: NvmlSession, handle: Any):
        self._nv = session
        self._handle = handle
        self.unsupported: set[str] = set()  # GpuSample.unsupported names this reader found
        self._util_since_us = 0
        self._memo: dict[int, GpuProcess] = {}  # by pid: the previous sample's objects
        self._migs: tuple[MigHandle, ...] | None = None
        self._mig_by_instance: dict[int, str] = {}
        self._mig_unsupported: dict[int, set[str]] = {}

    def forget_migs(self) -> None:
        self._migs = None

    def read(self, mig_enabled: bool) -> dict:
        """`compute_processes`, `processes` and `migs` values (the fields NVML answered).

        Raises NvmlGpuLost; NvmlNotSupported only when the compute list itself
        is not supported (the caller marks the fields); another NvmlError when
        a list could not be read this time.
        """
        migs = self._read_migs() if mig_enabled else ()
        compute = self._nv.running_processes(self._handle)
        graphics: list = []
        if "graphics_processes" not in self.unsupported:
            try:
                graphics = self._nv.running_processes(self._handle, graphics=True)
            except NvmlNotSupported:
                self.unsupported.add("graphics_processes")
        rows, kinds = (compute, {}) if not graphics else _merge(compute, graphics)
        utilization = self._read_utilization(mig_enabled) if rows else {}
        return {
            "compute_processes": len(compute),
            "processes": self._processes(rows, kinds, utilization),
            "migs": migs,
        }

    def _read_utilization(self, mig_enabled: bool) -> dict[int, UtilizationSample]:
        if "process_utilization" in self.unsupported:
            return {}
        if mig_enabled:  # nvml.h: not supported on MIG-enabled GPUs
            self.unsupported.add("process_utilization")
            return {}
        try:
            utilization, self._util_since_us = self._nv.process_utilization(self._handle, self._util_since_us)
        except NvmlNotSupported:
            self.unsupported.add("process_utilization")
            return {}
        return utilization

    def _processes(
        self, rows: list[ProcessEntry], kinds: dict[int, int], utilization: dict[int, UtilizationSample]
    ) -> tuple[GpuProcess, ...]:
        """One GpuProcess per row; a process whose reading did not change is the previous one.

        Written for 8 GPUs x 64 processes a sample: no tuple, float or dict is
        made for a process that did not change, and a changed one is built
        without the frozen dataclass's `__init__` (which sets each field through
        `object.__setattr__`: 1.3 us, against 0.5 us for filling the instance's
        dict; the same immutable object; tests/unit/test_gpu_usage.py checks
        the field names).
        """
        memo = self._memo
        fresh: dict[int, GpuProcess] = {}
        mig_of = self._mig_by_instance
        new = _new
        for pid, used, gi, _ci in rows:
            util = utilization.get(pid)
            sm = mem = None
            if util is not None:
                sm, mem = util[2], util[3]  # whole percents: small ints, never allocated
            kind = _KIND[kinds.get(pid, 1)] if kinds else "compute"
            mig_uuid = mig_of.get(gi, "") if mig_of else ""  # (no MIG: the id is 0xFFFFFFFF)
            process = memo.get(pid)
            if (
                process is None
                or process.used_memory_bytes != used
                or process.sm_utilization_pct != sm
                or process.memory_utilization_pct != mem
                or process.kind != kind
                or process.mig_uuid != mig_uuid
            ):
                process = new(GpuProcess)
                process.__dict__.update(
                    pid=pid,
                    kind=kind,
                    used_memory_bytes=used,
                    sm_utilization_pct=sm,
                    memory_utilization_pct=mem,
                    mig_uuid=mig_uuid,
                )
            fresh[pid] = process
        self._memo = fresh
        return tuple(fresh.values())

    def _read_migs(self) -> tuple[MigSample, ...]:
        if self._migs is None:
            self._migs = self._nv.mig_handles(self._handle)
            self._mig_by_instance = {m.gpu_instance_id: m.uuid for m in self._migs if m.gpu_instance_id is not None}
            self._mig_unsupported = {m.index: set() for m in self._migs}
        samples = []
        for mig in self._migs:
            unsupported = self._mig_unsupported[mig.index]
            total = used = util = None
            try:
                if "memory" not in unsupported:
                    total, used, _free, _reserved = self._nv.memory(mig.handle)
            except NvmlNotSupported:
                unsupported.add("memory")
            except NvmlGpuLost:
                raise
            except NvmlError:
                self._migs = None  # the instance may be gone: look again next time
            try:
                if "utilization" not in unsupported:
                    util = float(self._nv.utilization(mig.handle)[0])
            except NvmlNotSupported:
                unsupported.add("utilization")
            except NvmlGpuLost:
                raise
            except NvmlError:
                self._migs = None
            samples.append(
                MigSample(
                    index=mig.index,
                    uuid=mig.uuid,
                    memory_total_bytes=total,
                    memory_used_bytes=used,
                    utilization_gpu_pct=util,
                    unsupported=_mig_unsupported_fields(unsupported),
                )
            )
        return tuple(samples)


def _merge(compute: list[ProcessEntry], graphics: list[ProcessEntry]) -> tuple[list[ProcessEntry], dict[int, int]]:
    """One row per pid, and each pid's kind bits (1 compute, 2 graphics): a pid in both
    lists is "compute+graphics", with the larger memory figure."""
    merged: dict[int, list] = {pid: [1, used, gi, ci] for pid, used, gi, ci in compute}
    for pid, used, gi, ci in graphics:
        entry = merged.get(pid)
        if entry is None:
            merged[pid] = [2, used, gi, ci]
            continue
        entry[0] |= 2
        if used is not None and (entry[1] is None or used > entry[1]):
            entry[1] = used
    rows = [(pid, used, gi, ci) for pid, (_bits, used, gi, ci) in merged.items()]
    return rows, {pid: entry[0] for pid, entry in merged.items()}


_new = object.__new__


def _mig_unsupported_fields(groups: set[str]) -> tuple[str, ...]:
    fields: list[str] = []
    if "memory" in groups:
        fields += ["memory_total_bytes", "memory_used_bytes"]
    if "utilization" in groups:
        fields.append("utilization_gpu_pct")
    return tuple(fields)
