"""Run `aios-agent` with Python's audit hooks reporting every write outside the temp dir.

The agent's pod has a read-only root filesystem (only /tmp is writable). Tests
start the agent as `python -m tests.support.readonly_guard run ...`: each attempt to
open a file for writing, create, rename, remove or chmod a path outside
`ALLOWED` prints one `READONLY-VIOLATION ...` line to stderr (the attempt
itself goes ahead, so the agent behaves as it would without the guard).
"""

from __future__ import annotations

import os
import sys
import tempfile

ALLOWED = tuple(os.path.realpath(p) + os.sep for p in {"/tmp", tempfile.gettempdir()}) + ("/dev/",)
MARK = "READONLY-VIOLATION"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.symlink", "os.link",
                "os.chmod", "os.chown", "os.utime"}


def _outside(path) -> bool:
    if isinstance(path, int) or path is None:  # a file descriptor: already open
        return False
    text = os.fsdecode(path)
    return not os.path.realpath(text).startswith(ALLOWED)


def _writes(mode, flags) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _hook(event: str, args: tuple) -> None:
    if event == "open" and len(args) >= 3 and _writes(args[1], args[2]) and _outside(args[0]):
        sys.stderr.write(f"{MARK} open for writing: {args[0]!r}\n")
    elif event in _PATH_EVENTS and args and _outside(args[0]):
        sys.stderr.write(f"{MARK} {event}: {args[0]!r}\n")


if __name__ == "__main__":
    sys.addaudithook(_hook)
    from agent.cli import main

    sys.exit(main(sys.argv[1:]))
