"""The agent's retry counter: consecutive failures in, the next delay out.

The delay itself is the rule both programs share (`proto/common/backoff.py`:
capped exponential with "full" or "equal" jitter); the telemetry stream uses
full jitter (a cheap, prompt reconnect), the annotator equal jitter.
"""

from __future__ import annotations

import random

from proto.common.backoff import Jitter, backoff_delay

__all__ = ["Backoff"]


class Backoff:
    """Counts consecutive failures; `next_delay()` after each, `reset()` after a success."""

    def __init__(
        self,
        initial_s: float = 1.0,
        cap_s: float = 60.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
        *,
        jitter: Jitter = "equal",
    ):
        if initial_s <= 0 or cap_s < initial_s or factor < 1:
            raise ValueError(f"bad backoff: initial_s={initial_s}, cap_s={cap_s}, factor={factor}")
        if jitter not in ("full", "equal"):
            raise ValueError(f"bad backoff: unknown jitter {jitter!r} (expected 'full' or 'equal')")
        self.initial_s, self.cap_s, self.factor, self.jitter = initial_s, cap_s, factor, jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        delay = backoff_delay(
            self.failures, self.initial_s, self.cap_s, jitter=self.jitter, factor=self.factor, rand=self._rng.random
        )
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
