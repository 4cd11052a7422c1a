"""Uids of their own for policy workers, one per live worker, unique on the machine.

A lease is an exclusive `flock` on `<lock_dir>/<uid>.lock`, so two servers on
one machine (or two test sessions) never hand out the same uid; the kernel
drops the lock when the holder dies. A uid's processes belong to its one
worker, which is what makes the per-uid limits (RLIMIT_NPROC) and the sweep
by uid exact. Leftovers of a previous holder (a daemon that survived a crashed
server) are killed when the uid is leased again.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from aggregator.policies.sandbox.sweep import kill_uid

__all__ = ["UidLease", "UidPool", "default_lock_dir"]


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"aios-policy-uids-{os.geteuid()}"


@dataclass
class UidLease:
    uid: int
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1


class UidPool:
    def __init__(self, first: int, last: int, lock_dir: Path | None = None) -> None:
        self.first, self.last = first, last
        self.lock_dir = lock_dir or default_lock_dir()
        self._next = first
        self._lock = threading.Lock()

    def _private_dir(self) -> Path:
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.lock_dir.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise OSError(f"{self.lock_dir}: not private (owner {st.st_uid}, mode {oct(st.st_mode & 0o777)})")
        return self.lock_dir

    def lease(self) -> UidLease | None:
        """A free uid, or None when all are taken."""
        folder = self._private_dir()
        with self._lock:
            size = self.last - self.first + 1
            for step in range(size):
                uid = self.first + (self._next - self.first + step) % size
                fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._next = uid + 1 if uid < self.last else self.first
                kill_uid(uid)  # what a previous holder left behind
                return UidLease(uid, fd)
        return None
