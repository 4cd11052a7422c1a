"""Counting policy failures for `aios_cluster_policy_errors_total`.

Governance pre-checks run through handles wrapped here (a `PolicyError` from
loading, `eval` or `management` counts once); the stability checker's
failures are its verdicts with outcome "error" (`count_verdict`). The count
starts at 0 with the process, as a Prometheus counter does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aggregator.policies import PolicyError

__all__ = ["PolicyErrorCounter"]


class PolicyErrorCounter:
    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """The count so far (a metrics provider)."""
        with self._lock:
            return self._count

    def add(self, n: int = 1) -> None:
        with self._lock:
            self._count += n

    def count_verdict(self, verdict: Any) -> None:
        """A stability checker `on_verdict` listener."""
        if getattr(verdict, "outcome", None) == "error":
            self.add()

    def counting(self, open_policy: Callable[..., Any]) -> Callable[..., Any]:
        """`open_policy` whose failures, and whose handles' failures, are counted."""

        def open_counted(*args: Any, **kwargs: Any) -> _CountedHandle:
            try:
                return _CountedHandle(open_policy(*args, **kwargs), self)
            except PolicyError:
                self.add()
                raise

        return open_counted


class _CountedHandle:
    def __init__(self, handle: Any, counter: PolicyErrorCounter) -> None:
        self._handle = handle
        self._counter = counter

    def eval(self, input_data: dict, parameters: dict | None = None) -> dict:
        try:
            return self._handle.eval(input_data, parameters)
        except PolicyError:
            self._counter.add()
            raise

    def management(self, action: str, data: dict) -> dict:
        try:
            return self._handle.management(action, data)
        except PolicyError:
            self._counter.add()
            raise

    def close(self) -> None:
        self._handle.close()
