"""NVML reads with a time bound: one reader thread reads the GPUs in order, and a call that never returns ties up only its GPU.

A driver in trouble can leave an NVML call blocked in the kernel for minutes
or for good. A ctypes call cannot be interrupted, so the collector does not
make such calls on the sampling thread: `BoundedReader.run` hands one
sample's reads (one per GPU) to a reader thread, which makes them one after
the other, and waits at most the bound (`DEFAULT_BOUND_S`,
`AIOS_NVML_CALL_TIMEOUT_S`) for each read from the moment it started (the
deadline moves on as each GPU finishes).

A read that overruns is reported hung (`CallHung`, naming the call in flight:
`agent.gpu.nvml_backend.call_in_flight`); its thread is abandoned, left
stuck in the driver (a daemon thread: it never keeps the agent from
exiting), and the reads not yet made are each given a fresh thread, all at
once, so a sample waits about two bounds at most (`longest_wait_s`) even
when every GPU hangs (a driver-wide hang). The hung GPU's key is not asked
again until its read returns; then it is back in the rotation.

Why one thread and not one per GPU: every NVML call through ctypes releases
and retakes the GIL, so 8 threads reading at once hand the GIL over at
every call; one reader makes the same calls with nobody to hand it to
(benchmarks/README.md, "GPU health to Kubernetes").
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.gpu.nvml_backend import call_in_flight
from proto.common.settings import number_setting

__all__ = ["BOUND_ENV", "DEFAULT_BOUND_S", "BoundedReader", "CallHung", "bound_from_env", "longest_wait_s"]

DEFAULT_BOUND_S = 5.0
BOUND_ENV = "AIOS_NVML_CALL_TIMEOUT_S"


def bound_from_env(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    return float(number_setting(env, BOUND_ENV, DEFAULT_BOUND_S, low=0, high=300, low_exclusive=True, unit="seconds"))


def longest_wait_s(bound_s: float) -> float:
    """The longest one `BoundedReader.run` waits on hung reads: the first hang in order, then the rest at once."""
    return 2 * bound_s


class CallHung(Exception):
    """A read did not return within the bound (or an earlier one on the same key still has not)."""

    def __init__(self, call: str, waited_s: float):
        super().__init__(f"{call} did not return within {waited_s:g} s")
        self.call = call
        self.waited_s = waited_s


class _Batch:
    """Reads made in order by one thread; the waiting thread may cut it at the read in progress."""

    def __init__(self, reads: Sequence[Callable[[], Any]]):
        self.reads = reads
        self.results: list[Any] = [None] * len(reads)
        self.errors: list[BaseException | None] = [None] * len(reads)
        self.current: tuple[int, float] = (0, time.monotonic())  # (read in progress, when it started): one attribute
        self.returned = 0  # reads finished, in order
        self.cut_at: int | None = None  # the read the waiting thread gave up on
        self.thread_ident: int | None = None
        self.finished = threading.Event()  # every read returned, or the cut one did
        self._lock = threading.Lock()

    def run(self) -> None:
        self.thread_ident = threading.get_ident()
        try:
            for i, read in enumerate(self.reads):
                with self._lock:
                    if self.cut_at is not None:
                        # given up on before this thread even began (only read 0 can be): nothing is
                        # in the driver, so that key is free again
                        self.returned = i + 1
                        return
                    self.current = (i, time.monotonic())
                try:
                    self.results[i] = read()
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
                    self.errors[i] = exc
                with self._lock:
                    self.returned = i + 1
                    if self.cut_at is not None:
                        return  # abandoned while in this read: the rest went to other threads
        finally:
            self.finished.set()

    def wait(self, bound_s: float) -> int | None:
        """Until every read returned (None) or one overran `bound_s` from its start: cut there, return its index."""
        while not self.finished.is_set():
            index, started = self.current
            remaining = started + bound_s - time.monotonic()
            if remaining > 0:
                self.finished.wait(remaining)
                continue
            with self._lock:
                if self.returned <= index and self.current[0] == index and not self.finished.is_set():
                    self.cut_at = index
                    return index
        return None

    def has_returned(self, index: int) -> bool:
        return self.returned > index


class _Pending:
    """A read given up on: still inside the driver until `returned()`."""

    def __init__(self, batch: _Batch, index: int, call: str):
        self.batch = batch
        self.index = index
        self.call = call

    def returned(self) -> bool:
        return self.batch.has_returned(self.index)

    def call_now(self) -> str:
        return call_in_flight(self.batch.thread_ident) or self.call


class BoundedReader:
    """Runs reads keyed by GPU index in order on a reader thread of its own (started on first use), each within the bound.

    Used by one thread at a time (the collector holds its lock around it).
    """

    def __init__(self, name: str, bound_s: float):
        self.name = name
        self.bound_s = bound_s
        self._queue: queue.SimpleQueue[_Batch | None] | None = None  # the reader thread's; None: none running
        self._pending: dict[int, _Pending] = {}

    def stuck(self) -> list[int]:
        """The keys whose read has not returned (not asked again until it does)."""
        return [key for key, pending in self._pending.items() if not pending.returned()]

    def run(self, reads: Sequence[tuple[int, Callable[[], Any]]]) -> list[Any]:
        """Each read's result, in order; a `CallHung` in place of a read that overran the bound or whose
        key's earlier read still has not returned (then it is not asked). Re-raises the first exception a
        read raised, once every read has been waited for."""
        out: list[Any] = [None] * len(reads)
        asked: list[int] = []
        for i, (key, _) in enumerate(reads):
            pending = self._pending.get(key)
            if pending is not None and not pending.returned():
                out[i] = CallHung(pending.call_now(), self.bound_s)
                continue
            self._pending.pop(key, None)
            asked.append(i)
        if not asked:
            return out
        batch = _Batch([reads[i][1] for i in asked])
        self._submit(batch)
        cut = batch.wait(self.bound_s)
        rest: list[tuple[int, _Batch]] = []
        if cut is not None:
            self._queue = None  # that thread is stuck: the next run starts a fresh one
            self._hung(reads, out, asked[cut], batch, cut)
            # the reads not yet made, each on a thread of its own: should they hang too (the whole
            # driver stuck), the sample waits one more bound, not one per GPU
            for i in asked[cut + 1 :]:
                alone = _Batch([reads[i][1]])
                threading.Thread(target=alone.run, name=f"{self.name}-{reads[i][0]}", daemon=True).start()
                rest.append((i, alone))
            for i, alone in rest:
                if alone.wait(self.bound_s) is not None:
                    self._hung(reads, out, i, alone, 0)
        errors: list[BaseException] = []
        for pos, i in enumerate(asked if cut is None else asked[:cut]):
            errors.extend(self._take(batch, pos, out, i))
        for i, alone in rest:
            if not isinstance(out[i], CallHung):
                errors.extend(self._take(alone, 0, out, i))
        if errors:
            raise errors[0]
        return out

    def _take(self, batch: _Batch, pos: int, out: list[Any], i: int) -> list[BaseException]:
        error = batch.errors[pos]
        if error is not None:
            return [error]
        out[i] = batch.results[pos]
        return []

    def _hung(self, reads: Sequence[tuple[int, Any]], out: list[Any], i: int, batch: _Batch, pos: int) -> None:
        call = call_in_flight(batch.thread_ident) or "an NVML call"
        self._pending[reads[i][0]] = _Pending(batch, pos, call)
        out[i] = CallHung(call, self.bound_s)

    def _submit(self, batch: _Batch) -> None:
        if self._queue is None:
            jobs: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=self.name, daemon=True).start()
            self._queue = jobs
        self._queue.put(batch)

    def close(self) -> None:
        """Ends the reader thread (a stuck one ends when its call returns, if ever: it is a daemon)."""
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


def _serve(jobs: queue.SimpleQueue[_Batch | None]) -> None:
    while True:
        batch = jobs.get()
        if batch is None:
            return
        batch.run()
        if batch.cut_at is not None:
            return  # abandoned: nothing more comes on this queue
