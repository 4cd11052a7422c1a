"""One worker thread that keeps doing what is due: the loop the Node writers share.

The annotator and the condition writer each own one: their `step()` does what
is due now and returns the seconds until something is due next; `wake()`
cuts that sleep short when new state arrives. An exception escaping a step is
logged and followed by the owner's backoff, so a bug in one step never ends
the thread that keeps the Node true.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.backoff import Backoff

__all__ = ["StepLoop"]


class StepLoop:
    def __init__(self, name: str, step: Callable[[], float], backoff: Backoff, join_timeout_s: float,
                 log: logging.Logger):
        self._name = name
        self._step = step
        self._backoff = backoff
        self._join_timeout_s = join_timeout_s  # a call in flight ends within its request timeout
        self._log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run_forever, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self._join_timeout_s if timeout_s is None else timeout_s)
            self._thread = None

    def run_forever(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delay = self._step()
            except Exception:  # noqa: BLE001 - logged, then retried after the backoff: the thread must live on
                self._log.exception("%s: unexpected failure; retrying", self._name)
                delay = self._backoff.next_delay()
            self._wake.wait(delay)
