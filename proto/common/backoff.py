"""The one retry-delay rule: capped exponential backoff with jitter.

Agents and aggregators retry servers shared by many (the Kubernetes API
server, the aggregator, the parser API, webhooks); after an outage they all
fail at once, so each delay is randomised (jitter) or the fleet would come
back in lockstep. Two kinds, chosen by the caller:
- "full": uniform in [0, ceiling]: spreads a reconnect storm the most (a
  cheap reconnect that must be prompt: the agent's telemetry stream);
- "equal": uniform in [ceiling/2, ceiling]: keeps a floor, so a caller that
  failed for a reason of its own does not hammer the server (the annotator,
  every aggregator retry).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

__all__ = ["Jitter", "backoff_delay"]

Jitter = Literal["full", "equal"]

_MAX_EXPONENT = 64  # past any cap long before; keeps factor ** n a finite float


def backoff_delay(
    attempt: int,
    initial_s: float,
    cap_s: float,
    *,
    jitter: Jitter = "full",
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay after `attempt` earlier failures (0: the first retry).

    The ceiling is `min(cap_s, initial_s * factor**attempt)`; `rand()` (a float
    in [0, 1], like `random.random`) places the delay inside the jitter range:
    `rand=lambda: 1.0` gives the ceiling itself.
    """
    ceiling = min(cap_s, initial_s * factor ** min(max(attempt, 0), _MAX_EXPONENT))
    if jitter == "full":
        return ceiling * rand()
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * rand()
    raise ValueError(f"unknown jitter {jitter!r} (expected 'full' or 'equal')")
