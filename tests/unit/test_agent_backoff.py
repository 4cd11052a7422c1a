"""agent.backoff.Backoff: counts failures, hands out the shared rule's delays, starts over on reset."""

import random

import pytest

from agent.backoff import Backoff
from tests.support.scripted_random import ScriptedRandom


def test_unknown_jitter_is_refused():
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
