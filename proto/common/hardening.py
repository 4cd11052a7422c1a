"""Process hardening both programs apply (Linux; elsewhere a no-op that says so)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["PR_SET_DUMPABLE", "is_dumpable", "set_not_dumpable"]

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return int(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))


def set_not_dumpable() -> bool:
    """`PR_SET_DUMPABLE` off for this process: other processes of the same uid can no
    longer read its `/proc/<pid>/environ`, memory or file descriptors, nor ptrace it,
    and it leaves no core dump. For the processes that hold tokens. False where not Linux."""
    if not sys.platform.startswith("linux"):
        return False
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        err = ctypes.get_errno()
        log.warning("could not make this process non-dumpable (errno %d)", err)
        return False
    return True


def is_dumpable() -> bool:
    return sys.platform.startswith("linux") and _prctl(PR_GET_DUMPABLE) == 1
