"""Load-average style moving averages: the one rule for the agent's network rates and the aggregator's figures.

Three windows, 1, 5 and 15 minutes, as the kernel's load average. Each keeps an
exponentially weighted average; a value observed `dt` seconds after the
previous one moves it by 1 - exp(-dt/T), so irregular intervals (a missed
sample) are weighted right. The first value starts the average (it is not
pulled toward zero before the window has filled); an unknown value (None)
changes nothing.
"""

from __future__ import annotations

import math

__all__ = ["LOAD_AVERAGE_WINDOWS_S", "NO_AVERAGES", "Averages", "Weights", "ewma_update", "ewma_weights"]

LOAD_AVERAGE_WINDOWS_S = (60.0, 300.0, 900.0)

Averages = tuple[float | None, float | None, float | None]  # 1m, 5m, 15m; None before the first value
Weights = tuple[float, float, float]

NO_AVERAGES: Averages = (None, None, None)


def _weight(dt: float, window_s: float) -> float:
    return 1.0 - math.exp(-max(dt, 0.0) / window_s)


def ewma_weights(dt: float) -> Weights:
    """How much a new value counts in each window after `dt` seconds (1 - e^(-dt/T))."""
    one, five, fifteen = LOAD_AVERAGE_WINDOWS_S
    return _weight(dt, one), _weight(dt, five), _weight(dt, fifteen)


def _step(old: float | None, value: float, alpha: float) -> float:
    return value if old is None else old + alpha * (value - old)


def ewma_update(previous: Averages, value: float | None, dt: float, weights: Weights | None = None) -> Averages:
    """One step of the three averages. `weights` (from `ewma_weights(dt)`) saves
    recomputing them for several series updated at the same moment."""
    if value is None:
        return previous
    w = ewma_weights(dt) if weights is None else weights
    return _step(previous[0], value, w[0]), _step(previous[1], value, w[1]), _step(previous[2], value, w[2])
