"""The notification dispatcher's retries and the webhook body (sinks in Python: pure logic)."""

from aggregator.stability.checker import Transition
from aggregator.stability.notify import NotificationDispatcher, NotifyError, transition_payload
from aggregator.stability.verdicts import Verdict
from tests.support.scripted_random import ScriptedRandom


def verdict(vid, outcome):
    return Verdict(cluster_id="c1", checked_at=100.0 + vid, duration_s=0.1, policy_uri="p:1.0-a", outcome=outcome,
                   stability_check_data={"reasons": []}, id=vid)


class FlakySink:
    name = "flaky"

    def __init__(self, failures):
        self.failures = failures
        self.attempts = []

    def send(self, transition):
        self.attempts.append(transition.verdict.id)
        if len(self.attempts) <= self.failures:
            raise NotifyError("down")


def test_payload():
    assert transition_payload(Transition(verdict(2, "unstable"), verdict(1, "stable"))) == {
        "event": "cluster_stability_changed", "cluster_id": "c1", "is_stable": False, "previous_is_stable": True,
        "checked_at": 102.0, "policy_uri": "p:1.0-a", "verdict_id": 2, "stability_check_data": {"reasons": []},
    }
    assert transition_payload(Transition(verdict(1, "unstable"), None))["previous_is_stable"] is None


def test_retries_with_growing_backoff_then_gives_up_and_moves_on():
    sleeps = []
    flaky, healthy = FlakySink(failures=4), FlakySink(failures=0)
    dispatcher = NotificationDispatcher([flaky, healthy], attempts=3, backoff_s=1.0, max_backoff_s=1.5, sleep=sleeps.append,
                                        rng=ScriptedRandom(1.0))  # jitter at its top: the plain steps
    dispatcher.start()
    dispatcher.submit(Transition(verdict(2, "unstable"), verdict(1, "stable")))
    dispatcher.submit(Transition(verdict(3, "stable"), verdict(2, "unstable")))
    assert dispatcher.flush(10)
    dispatcher.close()
    assert flaky.attempts == [2, 2, 2, 3, 3]  # verdict 2 given up after 3 attempts; 3 delivered on its 2nd
    assert healthy.attempts == [2, 3]  # one failing sink does not stop the others
    assert sleeps == [1.0, 1.5, 1.0]
    assert (dispatcher.delivered, dispatcher.failed) == (3, 1)
