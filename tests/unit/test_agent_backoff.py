"""agent.backoff: the agent's one capped exponential backoff (full and equal jitter)."""

import random

import pytest

from agent.backoff import Backoff, backoff_delay
from tests.support.scripted_random import ScriptedRandom


@pytest.mark.parametrize("attempt, low, high", [(0, 0.5, 1.0), (1, 1.0, 2.0), (3, 4.0, 8.0), (6, 30.0, 60.0),
                                                (10_000, 30.0, 60.0), (-1, 0.5, 1.0)])
def test_equal_jitter_lies_between_half_the_ceiling_and_the_ceiling(attempt, low, high):
    assert backoff_delay(attempt, 1.0, 60.0, jitter="equal", rand=lambda: 0.0) == low
    assert backoff_delay(attempt, 1.0, 60.0, jitter="equal", rand=lambda: 1.0) == high


def test_full_jitter_reaches_zero_and_the_factor_is_the_callers():
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 1.0) == 9.0
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, 1.0, 60.0, factor=3.0, rand=lambda: 0.25) == 2.25


def test_unknown_jitter_is_refused():
    with pytest.raises(ValueError, match="unknown jitter 'none'"):
        backoff_delay(0, 1.0, 2.0, jitter="none")
    with pytest.raises(ValueError, match="unknown jitter 'none'"):
        Backoff(jitter="none")


def test_backoff_grows_to_the_cap_and_reset_starts_over():
    backoff = Backoff(initial_s=1.0, cap_s=8.0, rng=ScriptedRandom(0.0, 1.0, 0.5, 0.25, 1.0))
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 2.0, 3.0, 5.0, 8.0, 8.0]
    assert backoff.failures == 6
    backoff.reset()
    assert (backoff.failures, backoff.next_delay()) == (0, 1.0)


def test_full_jitter_backoff_with_a_seeded_rng_stays_under_each_ceiling():
    backoff = Backoff(initial_s=0.5, cap_s=4.0, rng=random.Random(3), jitter="full")
    delays = [backoff.next_delay() for _ in range(200)]
    ceilings = [0.5, 1.0, 2.0] + [4.0] * 197
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings))
    assert max(delays[3:]) > 3.0 and min(delays[3:]) < 1.0  # spread over the whole range, not lockstep


@pytest.mark.parametrize("kwargs, word", [({"initial_s": 0}, "initial_s=0"), ({"initial_s": 5, "cap_s": 1}, "cap_s=1"),
                                          ({"factor": 0.5}, "factor=0.5")])
def test_nonsense_settings_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Backoff(**kwargs)
