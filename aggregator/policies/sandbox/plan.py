"""What a policy worker may do: the limits an operator sets, and the plan handed to the worker.

`SandboxLimits` comes from `PolicyConfig` (the `AIOS_POLICY_*` settings,
docs/policy-sandbox.md); `worker_plan` turns it, the policy's folders and the
worker's uid into the JSON the worker applies to itself (`confine.apply`).
Pure: no process is touched here.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SYSTEM_READ_PATHS", "SandboxLimits", "WorkerPlan", "network_allowed_for", "parse_uid_range", "worker_plan"]

# what an interpreter and its C libraries read besides its own prefix; nothing that holds secrets
SYSTEM_READ_PATHS = (
    "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
    "/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/etc/localtime", "/etc/timezone", "/etc/resolv.conf",
    "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/passwd", "/etc/group",
    "/etc/ld.so.cache", "/etc/mime.types", "/etc/os-release", "/usr/lib/os-release", "/etc/debian_version",
    "/etc/lsb-release", "/etc/redhat-release", "/etc/pip.conf", "/etc/xdg/pip",
    "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full",
    "/sys/devices/system/cpu",
)


@dataclass(frozen=True)
class SandboxLimits:
    cpu_s: int = 3600  # CPU seconds over a worker's whole life (a busy loop left running between calls ends)
    max_processes: int = 32  # processes and threads of the worker's own uid
    max_open_files: int = 256
    max_file_mb: int = 64
    network_allowed: tuple[str, ...] = ()  # policy sources (glob patterns) allowed the network; "*": all
    worker_uids: tuple[int, int] | None = (61000, 61999)  # per-worker uids when the server is root; None: never


def parse_uid_range(text: str) -> tuple[int, int] | None:
    """`AIOS_POLICY_WORKER_UIDS`: `FIRST-LAST`, or `off`."""
    text = text.strip().lower()
    if text in ("off", "none", "0", "false", "no"):
        return None
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError as exc:
        raise ValueError(f"AIOS_POLICY_WORKER_UIDS={text!r}: expected FIRST-LAST (e.g. 61000-61999) or off") from exc
    if not 1000 <= low <= high < 2**31:
        raise ValueError(f"AIOS_POLICY_WORKER_UIDS={text!r}: uids must be 1000 <= FIRST <= LAST")
    return low, high


def network_allowed_for(label: str, patterns: Sequence[str]) -> bool:
    """Whether the policy loaded from `label` (its URI or location) may use the network."""
    return any(pattern == "*" or fnmatch.fnmatchcase(label, pattern) for pattern in patterns)


def _existing(paths: Iterable[str | Path | None]) -> list[str]:
    seen: list[str] = []
    for path in paths:
        if path and str(path) not in seen and Path(path).exists():
            seen.append(str(Path(path)))
    return seen


@dataclass(frozen=True)
class WorkerPlan:
    memory_mb: int
    limits: SandboxLimits
    network_allowed: bool
    read_paths: list[str]
    write_paths: list[str]
    uid: int | None = None

    def to_json(self) -> dict:
        return {
            "memory_mb": self.memory_mb,
            "cpu_s": self.limits.cpu_s,
            "max_processes": self.limits.max_processes,
            "max_open_files": self.limits.max_open_files,
            "max_file_bytes": self.limits.max_file_mb * 1024 * 1024,
            "network_allowed": self.network_allowed,
            "read_paths": self.read_paths,
            "write_paths": self.write_paths,
            "uid": self.uid,
            "gid": self.uid,
        }


def worker_plan(
    *,
    label: str,
    memory_mb: int,
    limits: SandboxLimits,
    code_dir: Path,
    site_dir: Path | None,
    scratch: Path,
    uid: int | None,
    child_dir: Path,
    extra_read: Sequence[Path] = (),
    extra_write: Sequence[Path] = (),
) -> WorkerPlan:
    """The plan for one worker: it reads the interpreter, its package and the system libraries,
    and writes only `scratch` (and `extra_write`)."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    read = _existing([*sorted(prefixes), code_dir, site_dir, child_dir, *extra_read, *SYSTEM_READ_PATHS])
    return WorkerPlan(
        memory_mb=memory_mb,
        limits=limits,
        network_allowed=network_allowed_for(label, limits.network_allowed),
        read_paths=read,
        write_paths=_existing([scratch, *extra_write]),
        uid=uid,
    )
