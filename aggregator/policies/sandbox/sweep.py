"""Killing everything a policy worker started, daemons included.

Three nets, used together (`kill_worker`):
- the worker's cgroup, where one could be made (`cgroup.kill` takes all of it);
- the worker's own uid, where it has one (every process of that uid is its);
- its process tree: the worker is the subreaper of what it starts
  (`confine.py`), so even a double-forked daemon stays below it while it
  lives. The tree is stopped first (no more forks), then killed, walking
  /proc until nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

__all__ = ["descendants", "kill_tree", "kill_uid", "processes"]


def processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, real uid) of every process now (those that vanish meanwhile are skipped)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry.name}/status", "rb") as handle:
                status = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces and ')'
        uid_line = next((line for line in status.splitlines() if line.startswith(b"Uid:")), b"Uid: -1")
        yield int(entry.name), int(fields[1]), int(uid_line.split()[1])


def descendants(root: int) -> list[int]:
    """Every process below `root`, nearest first."""
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in processes():
        children.setdefault(ppid, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        below = [child for pid in frontier for child in children.get(pid, ())]
        found += below
        frontier = below
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pids: list[int]) -> None:
    """Reap those that became our children (we are their subreaper or init)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def kill_tree(root: int, rounds: int = 20) -> int:
    """Stop, then kill, every descendant of `root` (not `root` itself); the number killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        below = [pid for pid in descendants(root) if pid not in killed]
        if not below:
            break
        _signal_all(below, signal.SIGSTOP)  # a stopped process forks no more
        below = descendants(root)
        _signal_all(below, signal.SIGKILL)
        killed.update(below)
    _reap(sorted(killed))
    return len(killed)


def kill_uid(uid: int, rounds: int = 50) -> int:
    """Kill every process whose real uid is `uid` (a worker's own uid); the number killed."""
    if uid <= 0:
        raise ValueError("refusing to sweep uid 0 or below")
    killed: set[int] = set()
    for _ in range(rounds):
        found = [pid for pid, _, owner in processes() if owner == uid and pid not in killed]
        if not found:
            break
        _signal_all(found, signal.SIGSTOP)
        _signal_all(found, signal.SIGKILL)
        killed.update(found)
    _reap(sorted(killed))
    return len(killed)
