"""NVML calls with a time bound: one worker thread per GPU, so a call that never returns ties up only its GPU.

A driver in trouble can leave an NVML call blocked in the kernel for minutes
or for good. A ctypes call cannot be interrupted, so the collector does not
make such calls on the sampling thread: each GPU's reads run on that GPU's
`GpuWorker`, and the sampler waits at most the bound (`DEFAULT_BOUND_S`,
`AIOS_NVML_CALL_TIMEOUT_S`). A GPU whose call has not returned by then is
reported unresponsive, naming the call (`agent.gpu.nvml_backend.call_in_flight`),
while the other GPUs and the host go on being sampled; its worker stays busy
until the call returns, and meanwhile the GPU is not asked anything else (so
no second thread piles up behind the first).

Worker threads are daemon threads started on first use: one stuck in the
driver never keeps the agent from exiting.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.gpu.nvml_backend import call_in_flight

__all__ = ["BOUND_ENV", "DEFAULT_BOUND_S", "CallHung", "GpuWorker", "Job", "bound_from_env"]

DEFAULT_BOUND_S = 5.0
BOUND_ENV = "AIOS_NVML_CALL_TIMEOUT_S"


def bound_from_env(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(BOUND_ENV, "").strip()
    if not raw:
        return DEFAULT_BOUND_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{BOUND_ENV}={raw!r}: not a number of seconds") from exc
    if not 0 < value <= 300:
        raise ValueError(f"{BOUND_ENV}={raw!r}: must be > 0 and <= 300 seconds")
    return value


class CallHung(Exception):
    """A GPU's NVML call did not return within the bound (or an earlier one still has not)."""

    def __init__(self, call: str, waited_s: float):
        super().__init__(f"{call} did not return within {waited_s:g} s")
        self.call = call
        self.waited_s = waited_s


class Job:
    """One piece of work on a worker: its result, or the exception it raised."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.started_at: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
            self.error = exc
        finally:
            self.done.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GpuWorker:
    """Runs one GPU's NVML work, one job at a time, on a daemon thread of its own."""

    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._current: Job | None = None
        self._lock = threading.Lock()

    def busy_with(self) -> Job | None:
        """The job still running (a call that has not returned), or None."""
        job = self._current
        return job if job is not None and not job.done.is_set() else None

    def submit(self, fn: Callable[[], Any]) -> Job:
        """Queue `fn`; raises `CallHung` when the previous job has not finished."""
        with self._lock:
            stuck = self.busy_with()
            if stuck is not None:
                waited = 0.0 if stuck.started_at is None else time.monotonic() - stuck.started_at
                raise CallHung(self.call_in_flight() or "an NVML call", waited)
            job = Job(fn)
            self._current = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.put(job)
            return job

    def run(self, fn: Callable[[], Any], bound_s: float) -> Any:
        """`fn()` on this worker, waiting at most `bound_s`; raises `CallHung` past it."""
        job = self.submit(fn)
        return self.wait(job, time.monotonic() + bound_s, bound_s)

    def wait(self, job: Job, deadline: float, bound_s: float) -> Any:
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            raise CallHung(self.call_in_flight() or "an NVML call", bound_s)
        return job.outcome()

    def call_in_flight(self) -> str | None:
        thread = self._thread
        return call_in_flight(thread.ident if thread is not None else None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.run()

    def close(self) -> None:
        """Ends the thread once its current job returns (a hung one never does: it is a daemon)."""
        self._jobs.put(None)
