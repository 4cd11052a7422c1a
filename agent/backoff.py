"""Capped exponential backoff with jitter: the agent's one implementation.

Every agent retries the same central servers (the Kubernetes API server, the
aggregator); after an outage they all fail at once, so each delay is
randomised (jitter) or the whole fleet would come back in lockstep.

Two kinds of jitter, chosen by the caller:
- "full": uniform in [0, ceiling]: spreads a reconnect storm the most
  (the telemetry stream, whose reconnect is cheap and must be prompt);
- "equal": uniform in [ceiling/2, ceiling]: keeps a floor, so a caller that
  failed for a reason of its own does not hammer the server (the annotator).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

__all__ = ["Backoff", "Jitter", "backoff_delay"]

Jitter = Literal["full", "equal"]

_MAX_EXPONENT = 64  # past the cap long before; keeps factor ** n a finite float


def backoff_delay(
    attempt: int,
    initial_s: float,
    cap_s: float,
    *,
    jitter: Jitter = "full",
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay after `attempt` earlier failures (0 for the first retry).

    `rand` returns a float in [0, 1) like `random.random`; its value places the
    delay inside the jitter range of the ceiling `min(cap_s, initial_s * factor**attempt)`.
    """
    ceiling = min(cap_s, initial_s * factor ** min(max(attempt, 0), _MAX_EXPONENT))
    if jitter == "full":
        return ceiling * rand()
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * rand()
    raise ValueError(f"unknown jitter {jitter!r} (expected 'full' or 'equal')")


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
