"""aggregator.backoff.retry_delay: doubling steps, capped, jittered to 50-100 % of the step."""

import random

import pytest

from aggregator.backoff import retry_delay


@pytest.mark.parametrize("retry, step", [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (10_000, 30.0), (0, 0.5)])
def test_steps_double_up_to_the_cap(retry, step):
    assert retry_delay(retry, 0.5, 30.0, rand=lambda: 1.0) == step
    assert retry_delay(retry, 0.5, 30.0, rand=lambda: 0.0) == step / 2


def test_jitter_scales_the_step_linearly():
    assert retry_delay(3, 1.0, 60.0, rand=lambda: 0.5) == 3.0  # step 4 s, 75 %
    assert retry_delay(3, 1.0, 60.0, rand=lambda: 0.25) == 2.5


def test_a_seeded_rng_spreads_retries_inside_the_bounds():
    rng = random.Random(11)
    delays = [retry_delay(4, 1.0, 60.0, rng.random) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) > 7.5 and min(delays) < 4.5  # not lockstep
