"""A cgroup (v2) per policy worker, where this process may make one.

Everything the worker forks stays in its cgroup whatever it does (setsid,
double fork), so `cgroup.kill` (Linux 5.14+) ends all of it; with the `pids`
controller available, `pids.max` caps its processes too. In a container the
cgroup filesystem is usually read-only: then there is none, and the sweep by
uid and process tree does the job (`sweep.py`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path

__all__ = ["WorkerCgroup", "cgroup_parent"]

log = logging.getLogger(__name__)
_counter = itertools.count(1)


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    return None


def cgroup_parent() -> Path | None:
    """Our own cgroup v2 folder, when we may make cgroups in it and move processes there."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    parent = mount / own.lstrip("/")
    if not (parent / "cgroup.procs").exists() or not os.access(parent, os.W_OK):
        return None
    return parent


class WorkerCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: Path, max_processes: int = 0) -> WorkerCgroup | None:
        path = parent / f"aios-policy-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
        except OSError as exc:
            log.debug("no cgroup for the policy worker: %s", exc)
            return None
        group = cls(path)
        if not (path / "cgroup.kill").exists():
            group.remove()
            return None
        if max_processes > 0 and (path / "pids.max").exists():
            with contextlib.suppress(OSError):
                (path / "pids.max").write_text(str(max_processes))
        return group

    @property
    def limits_processes(self) -> bool:
        try:
            return (self.path / "pids.max").read_text().strip() != "max"
        except OSError:
            return False

    def add(self, pid: int) -> bool:
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            log.warning("cannot move policy worker %d into %s: %s", pid, self.path, exc)
            return False
        return True

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.01)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()
