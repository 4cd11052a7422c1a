"""Who is on the node's GPUs: the kubelet's allocations and every GPU process's owner, per sample.

`GpuAttributor.attribute(gpus)` takes the GPU collector's samples (each with
its `processes` and `migs`) and returns the sample's `Attribution`:

- allocations: the kubelet's pod-resources `List`, resolved to the node's
  GPUs and MIG devices (`agent.attribution.devices`). The kubelet is read at
  the first sample, every `refresh_s` after, and early when a GPU gains a
  process, at most once per `min_refresh_s`, so a new pod shows within one
  sample and a deleted pod's devices are gone at the next read. Never an
  API-server call. When the kubelet cannot be read, `available` is false with
  the reason, allocations are empty, and processes are still attributed from
  their cgroups;
- owners: each process's `/proc/<pid>/cgroup` under `host_root`, read once per
  pid while it stays on a GPU (`agent.attribution.cgroup`), named from the
  allocations (`agent.attribution.join`).

Unchanged inputs give the previous sample's `Attribution` object, so a steady
node pays for a comparison of its process lists, not for rebuilding.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

from agent.attribution.cgroup import CgroupOwner, owner_from_cgroup
from agent.attribution.devices import GpuTargets, allocations
from agent.attribution.join import holders_by_device, name_owners
from agent.attribution.pod_resources import KubeletSnapshot, PodResourcesUnavailable
from proto.common.settings import number_setting
from proto.telemetry.v1.readings import Attribution, DeviceAllocation, GpuSample, ResourceCount

__all__ = ["REFRESH_ENV", "GpuAttributor", "KubeletReader", "read_cgroup", "refresh_from_env"]

log = logging.getLogger(__name__)
REFRESH_ENV = "AIOS_POD_RESOURCES_REFRESH_S"


def refresh_from_env(env) -> float:
    """$AIOS_POD_RESOURCES_REFRESH_S: seconds between reads of the kubelet (default 30; 0: every sample)."""
    return float(number_setting(env, REFRESH_ENV, 30.0, low=0, high=3600, unit="seconds"))


class KubeletReader(Protocol):
    def read(self) -> KubeletSnapshot: ...

    def close(self) -> None: ...


def read_cgroup(host_root: str, pid: int) -> CgroupOwner | None:
    """What the host's /proc/<pid>/cgroup says; None when the process is gone or unreadable."""
    try:
        with open(os.path.join(host_root, "proc", str(pid), "cgroup"), encoding="utf-8", errors="replace") as f:
            return owner_from_cgroup(f.read(65536))
    except OSError:
        return None


class GpuAttributor:
    name = "attribution"

    def __init__(
        self,
        kubelet: KubeletReader | None,
        *,
        host_root: str = "/",
        clock: Callable[[], float] = time.time,
        refresh_s: float = 30.0,
        min_refresh_s: float = 0.0,
        cgroup_reader: Callable[[int], CgroupOwner | None] | None = None,
    ):
        self._kubelet = kubelet
        self._clock = clock
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._read_cgroup = cgroup_reader or (lambda pid: read_cgroup(host_root, pid))
        self._snapshot: KubeletSnapshot | None = None
        self._reason = "" if kubelet is not None else "no kubelet socket configured"
        self._read_at: float | None = None
        self._tried_at: float | None = None
        self._read_wanted = False  # the process set changed since the last read
        self._cgroups: dict[int, CgroupOwner | None] = {}
        self._pids_by_device: dict[str, list[int]] = {}
        self._targets_key: tuple = ()
        self._allocations: tuple[DeviceAllocation, ...] = ()
        self._result: Attribution | None = None

    def attribute(self, gpus: tuple[GpuSample, ...]) -> Attribution:
        now = self._clock()
        pids_by_device: dict[str, list[int]] = {}
        for gpu in gpus:
            if not gpu.processes:
                continue
            if not gpu.migs:  # every process on the whole GPU: one list at C speed
                pids_by_device[gpu.uuid] = [process.pid for process in gpu.processes]
                continue
            for process in gpu.processes:
                pids_by_device.setdefault(process.mig_uuid or gpu.uuid, []).append(process.pid)
        processes_changed = pids_by_device != self._pids_by_device
        if processes_changed:
            self._update_cgroups(pids_by_device)
            self._pids_by_device = pids_by_device
        kubelet_changed = self._maybe_read_kubelet(now, processes_changed)

        targets_key = tuple((g.uuid, g.index, tuple((m.uuid, m.index) for m in g.migs)) for g in gpus)
        if kubelet_changed or targets_key != self._targets_key or self._result is None:
            self._targets_key = targets_key
            devices = self._snapshot.devices if self._snapshot is not None else ()
            self._allocations = allocations(devices, GpuTargets.of(gpus))
        elif not processes_changed:
            if self._snapshot is not None and self._result.refreshed_at != self._read_at:
                self._result = dataclasses.replace(self._result, refreshed_at=self._read_at)
            return self._result
        owners = name_owners(pids_by_device, self._cgroups, holders_by_device(self._allocations))
        snapshot = self._snapshot
        self._result = Attribution(
            available=snapshot is not None,
            reason="" if snapshot is not None else self._reason,
            refreshed_at=self._read_at if snapshot is not None else None,
            pods=snapshot.pods if snapshot is not None else 0,
            allocations=self._allocations,
            owners=owners,
            allocatable=_gpu_allocatable(snapshot),
        )
        return self._result

    def _update_cgroups(self, pids_by_device: dict[str, list[int]]) -> None:
        """Read the cgroups of new pids, forget those of pids gone (a pid seen again may be
        another process: it is read again)."""
        present = {pid for pids in pids_by_device.values() for pid in pids}
        cgroups = self._cgroups
        for pid in [p for p in cgroups if p not in present]:
            del cgroups[pid]
        new = [pid for pid in present if pid not in cgroups]
        for pid in new:
            cgroups[pid] = self._read_cgroup(pid)

    def _maybe_read_kubelet(self, now: float, changed_processes: bool) -> bool:
        """Read the kubelet when it is due; True when what it says (or whether it answers) changed."""
        if self._kubelet is None:
            return False
        tried = self._tried_at
        self._read_wanted = self._read_wanted or changed_processes
        due = tried is None or now - tried >= self._refresh_s or (self._read_wanted and now - tried >= self._min_refresh_s)
        if not due:
            return False
        self._tried_at = now
        self._read_wanted = False
        before = (self._snapshot, self._reason)
        try:
            snapshot = self._kubelet.read()
        except PodResourcesUnavailable as exc:
            if exc.reason != self._reason:
                log.warning("GPU attribution unavailable: %s", exc.reason)
            self._snapshot, self._reason = None, exc.reason
        else:
            if self._snapshot is None and self._reason:
                log.info("GPU attribution available again (kubelet pod-resources answers)")
            if snapshot.truncated:
                log.warning("the kubelet lists more devices than the agent keeps; the rest are left out")
            self._snapshot, self._reason, self._read_at = snapshot, "", now
        return (self._snapshot, self._reason) != before

    def close(self) -> None:
        if self._kubelet is not None:
            self._kubelet.close()


def _gpu_allocatable(snapshot: KubeletSnapshot | None) -> tuple[ResourceCount, ...]:
    if snapshot is None or snapshot.allocatable is None:
        return ()
    return tuple(
        ResourceCount(resource, len(ids))
        for resource, ids in sorted(snapshot.allocatable.items())
        if resource.startswith("nvidia.com/")
    )
