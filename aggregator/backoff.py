"""The aggregator's one retry delay: capped, doubling, with "equal jitter".

Its retries go to services shared by many (the Kubernetes API server, the
parser API, webhooks): after an outage every aggregator, and every queued job
within one, fails at the same moment. A random factor in [1/2, 1] of the step
spreads their retries, while the floor of half the step keeps the growth.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["retry_delay"]


def retry_delay(retry: int, initial_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the `retry`-th retry (1 = the first).

    The step is `min(max_s, initial_s * 2**(retry - 1))`; `rand()` (a float in
    [0, 1], like `random.random`) scales it to 50-100 %: `rand=lambda: 1.0` gives the step itself.
    """
    step = min(max_s, initial_s * 2.0 ** min(max(retry - 1, 0), 64))  # 2**64: past any cap
    return step * (0.5 + rand() / 2)
