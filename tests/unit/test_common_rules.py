"""proto.common: the retry delay and the moving averages both programs use (pure functions)."""

import math
import random

import pytest

from proto.common.backoff import backoff_delay
from proto.common.ewma import NO_AVERAGES, ewma_update, ewma_weights

# ---------------------------------------------------------------- backoff


@pytest.mark.parametrize("attempt, low, high", [(0, 0.5, 1.0), (1, 1.0, 2.0), (3, 4.0, 8.0), (6, 30.0, 60.0),
                                                (10_000, 30.0, 60.0), (-1, 0.5, 1.0)])
def test_equal_jitter_lies_between_half_the_ceiling_and_the_ceiling(attempt, low, high):
    assert backoff_delay(attempt, 1.0, 60.0, jitter="equal", rand=lambda: 0.0) == low
    assert backoff_delay(attempt, 1.0, 60.0, jitter="equal", rand=lambda: 1.0) == high


def test_equal_jitter_scales_linearly_inside_the_range():
    assert backoff_delay(2, 1.0, 60.0, jitter="equal", rand=lambda: 0.5) == 3.0  # ceiling 4 s, 75 %
    assert backoff_delay(2, 1.0, 60.0, jitter="equal", rand=lambda: 0.25) == 2.5


def test_full_jitter_reaches_zero_and_the_factor_is_the_callers():
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 1.0) == 9.0
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 0.25) == 2.25


def test_unknown_jitter_is_refused():
    with pytest.raises(ValueError, match="unknown jitter 'none'"):
        backoff_delay(0, 1.0, 2.0, jitter="none")


def test_a_seeded_rng_spreads_retries_inside_the_bounds():
    rng = random.Random(11)
    delays = [backoff_delay(3, 1.0, 60.0, jitter="equal", rand=rng.random) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) > 7.5 and min(delays) < 4.5  # not lockstep


# ---------------------------------------------------------------- moving averages


def test_ewma_first_value_then_weighted_by_elapsed_time():
    first = ewma_update(NO_AVERAGES, 50.0, 0.0)
    assert first == (50.0, 50.0, 50.0)
    after = ewma_update(first, 100.0, 60.0)
    assert after[0] == pytest.approx(50 + 50 * (1 - math.exp(-1)))
    assert after[1] == pytest.approx(50 + 50 * (1 - math.exp(-60 / 300)))
    assert after[2] == pytest.approx(50 + 50 * (1 - math.exp(-60 / 900)))
    assert ewma_update(after, None, 10.0) == after  # an unknown value changes nothing


def test_weights_given_are_the_weights_used_and_time_never_runs_back():
    assert ewma_weights(-5.0) == (0.0, 0.0, 0.0)
    assert ewma_update((10.0, 10.0, None), 20.0, 999.0, weights=(0.5, 0.0, 1.0)) == (15.0, 10.0, 20.0)
