"""Where slow HTTP work runs, so it never holds up the event loop, health, or each other.

- `WorkLane`: a few threads of its own (not the request thread pool the
  framework shares) for work that waits on a policy or builds large answers
  (stability checks, management, pre-checks, cluster updates, nodes_data),
  with a bound on how many callers may wait: past it, `LaneBusy` (503 with
  Retry-After) instead of an ever-growing queue.
- `SharedCall`: callers that arrive while the same call is in flight await
  its result instead of starting another (one evaluation, one verdict).

Both are used from the event loop; the threads start on first use.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DEFAULT_LANE_WAITING", "DEFAULT_LANE_WORKERS", "LaneBusy", "SharedCall", "WorkLane"]

T = TypeVar("T")

DEFAULT_LANE_WORKERS = 4
DEFAULT_LANE_WAITING = 64


class LaneBusy(Exception):
    """Too many calls are queued for the lane; the caller should retry later."""

    def __init__(self, name: str, waiting: int) -> None:
        super().__init__(f"the aggregator is busy ({waiting} {name} calls queued); retry shortly")
        self.retry_after_s = 1


class WorkLane:
    def __init__(self, name: str = "policy", *, workers: int = DEFAULT_LANE_WORKERS,
                 max_waiting: int = DEFAULT_LANE_WAITING) -> None:
        self.name = name
        self.workers = workers
        self.max_waiting = max_waiting
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the lane's threads; LaneBusy when too many already wait."""
        if self._in_flight >= self.workers + self.max_waiting:
            raise LaneBusy(self.name, self._in_flight)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=f"lane-{self.name}")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class SharedCall:
    """One call in flight at a time; whoever comes meanwhile gets the same result (or exception)."""

    def __init__(self) -> None:
        self._task: asyncio.Future | None = None
        self.started = 0  # how many calls really ran (the rest shared one)

    async def run(self, start: Callable[[], Awaitable[T]]) -> T:
        task = self._task
        if task is None or task.done():
            task = self._task = asyncio.ensure_future(start())
            self.started += 1
        # shielded: one caller going away must not cancel the call the others wait for
        return await asyncio.shield(task)
