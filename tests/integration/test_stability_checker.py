"""The checker with real policy workers (aggregator.policies), real SQLite, a webhook stand-in.

The registry here is an in-process stand-in with NodeRegistry's interface
(snapshot/subscribe); tests/integration/test_stability_e2e.py runs the real one.
"""

import time

import pytest

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import StabilityChecker, policy_opener
from aggregator.stability.notify import NotificationDispatcher, WebhookSink
from aggregator.stability.verdicts import VerdictStore
from proto.telemetry.v1.readings import HealthEvent
from tests.support.policy_packages import write_directory
from tests.support.stability import InProcessRegistry, WebhookStandIn, node_state
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER = "cluster-1"


@pytest.fixture
def parts(tmp_path):
    db = Database(tmp_path / "aggregator.sqlite")
    clusters = ClusterStore(db)
    registry = InProcessRegistry([node_state("node-a"), node_state("node-b")])
    made = []

    def make(history_limit=1000, **kwargs):
        checker = StabilityChecker(
            cluster_id=CLUSTER,
            registry=registry,
            cluster_store=clusters,
            verdicts=VerdictStore(db, history_limit=history_limit),
            open_policy=policy_opener(PolicyConfig(cache_dir=tmp_path / "policy-cache", call_timeout_s=10)),
            **kwargs,
        )
        made.append(checker)
        return checker

    yield registry, clusters, make, tmp_path
    for checker in made:
        checker.close()
    db.close()


def xid_event(gpu: int, xid: int, ts: float | None = None) -> HealthEvent:
    return HealthEvent(kind="xid", timestamp=ts or time.time(), gpu_index=gpu, gpu_uuid=f"GPU-x-{gpu}", xid=xid)


def test_xid_event_makes_it_unstable_at_once_and_the_webhook_hears_each_transition_once(parts):
    registry, _, make, _ = parts
    webhook = WebhookStandIn(fail_first=1)  # the first delivery fails: retried, still one call
    dispatcher = NotificationDispatcher([WebhookSink(webhook.url)], backoff_s=0.05)
    dispatcher.start()
    checker = make(interval_s=3600, debounce_s=0.05)
    checker.on_transition(dispatcher.submit)
    try:
        checker.start()
        first = wait_for(checker.latest)
        expected = ("stable", "schedule", "aios-default-stability", 2)
        assert (first.outcome, first.trigger, first.policy_uri, first.nodes) == expected

        event = xid_event(1, 79)
        registry.put(node_state("node-b", events=(event,)), kind="health", health=event)
        unstable = wait_for(lambda: (v := checker.latest()) and v.outcome == "unstable" and v)
        assert unstable.trigger == "event"
        assert [(r["node_id"], r["gpu"], r["reason"], r.get("xid")) for r in unstable.stability_check_data["reasons"]] == [
            ("node-b", 1, "xid", 79)
        ]
        calls = webhook.wait_for_calls(1)
        assert calls[0]["content_type"] == "application/json"
        assert calls[0]["body"]["is_stable"] is False
        assert calls[0]["body"]["previous_is_stable"] is True
        assert calls[0]["body"]["stability_check_data"]["reasons"][0]["node_id"] == "node-b"

        assert checker.check().outcome == "unstable"  # still unstable: no second call
        acked = checker.management("acknowledge", {"node_id": "node-b"})
        assert acked == {"acknowledged": [{"node_id": "node-b", "gpu": 1, "xid": 79, "up_to": event.timestamp}]}
        recovered = checker.check()
        assert recovered.outcome == "stable"
        checker.check()
        dispatcher.close()
        assert [c["body"]["is_stable"] for c in webhook.calls] == [False, True]
        assert webhook.attempts == 3
        outcomes = [v.outcome for v in checker.history()]
        assert outcomes == ["stable", "stable", "unstable", "unstable", "stable"]
    finally:
        webhook.close()


def test_stale_node_is_unstable_and_names_the_node(parts):
    registry, _, make, _ = parts
    checker = make()
    old = node_state("node-b", now=time.time() - 120, status="stale")
    registry.put(old)
    verdict = checker.check()
    assert verdict.outcome == "unstable"
    assert [(r["node_id"], r["gpu"], r["reason"]) for r in verdict.stability_check_data["reasons"]] == [("node-b", None, "stale")]


OPERATOR_POLICY = '''
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.parameters = parameters

    def eval(self, parameters, input_data, context):
        same = input_data["cluster"] == input_data["cluster_data"]
        return {"is_stable": False, "stability_check_data": {
            "says": "operator", "min_gpus": parameters["min_gpus"], "cluster_keys_match": same,
            "cluster_id": input_data["cluster_data"]["id"],
            "gpus": {n["node_id"]: len(n["gpus"]) for n in input_data["nodes_data"]}}}
'''


def test_an_operators_policy_replaces_the_default_and_its_answer_comes_back_verbatim(parts):
    _, clusters, make, tmp_path = parts
    package = write_directory(tmp_path / "operator-policy", OPERATOR_POLICY)
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {
        "policyRuleURI": str(package), "parameters": {"min_gpus": 16}}}})
    verdict = make().check()
    assert (verdict.outcome, verdict.policy_uri) == ("unstable", str(package))
    assert verdict.stability_check_data == {
        "says": "operator", "min_gpus": 16, "cluster_keys_match": True, "cluster_id": CLUSTER,
        "gpus": {"node-a": 2, "node-b": 2},
    }


@pytest.mark.parametrize(
    "body, expected_error",
    [
        ("    def eval(self, parameters, input_data, context):\n        raise RuntimeError('disk on fire')\n", "disk on fire"),
        ("    def eval(self, parameters, input_data, context):\n        return {'stability_check_data': {}}\n",
         "no boolean is_stable"),
    ],
)
def test_a_policy_error_is_a_verdict_of_its_own_and_never_a_transition(parts, body, expected_error):
    _, clusters, make, tmp_path = parts
    source = "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        pass\n" + body
    package = write_directory(tmp_path / "broken", source)
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {"policyRuleURI": str(package)}}})
    checker = make()
    transitions = []
    checker.on_transition(transitions.append)
    verdict = checker.check()
    assert (verdict.outcome, verdict.is_stable, verdict.stability_check_data) == ("error", None, None)
    assert expected_error in verdict.error
    assert checker.latest() == verdict
    assert transitions == []


def test_config_errors_and_unloadable_policies_are_reported(parts):
    _, clusters, make, tmp_path = parts
    checker = make()
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": "stability-check:1.0"}})
    assert "config.stabilityChecker: expected an object" in checker.check().error
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {"policyRuleURI": str(tmp_path / "nowhere")}}})
    verdict = checker.check()
    assert verdict.outcome == "error" and verdict.policy_uri == str(tmp_path / "nowhere")
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {}})
    assert checker.check().outcome == "stable"  # back to the default policy


def test_management_changes_a_parameter_and_the_next_verdict_follows_it(parts):
    registry, _, make, _ = parts
    checker = make()
    registry.put(node_state("node-a", events=(xid_event(0, 13),)))
    assert checker.check().outcome == "stable"  # XID 13 (graphics engine exception) is not fatal by default
    answer = checker.management("set_parameters", {"parameters": {"fatal_xids": [13, 79]}})
    assert answer["parameters"]["fatal_xids"] == [13, 79]
    verdict = checker.check()
    assert verdict.outcome == "unstable"
    assert verdict.stability_check_data["reasons"][0]["xid"] == 13


def test_history_is_bounded_and_survives_a_new_checker(parts):
    _, _, make, _ = parts
    checker = make(history_limit=3)
    ids = [checker.check().id for _ in range(5)]
    assert [v.id for v in checker.history()] == ids[:1:-1]
    assert [v.id for v in make(history_limit=3).history()] == ids[:1:-1]


def test_scheduled_checks_repeat_and_a_burst_of_changes_makes_one_check(parts):
    registry, _, make, _ = parts
    ticking = make(interval_s=0.2)
    ticking.start()
    wait_for(lambda: sum(v.trigger == "schedule" for v in ticking.history()) >= 3)
    ticking.close()

    quiet = make(interval_s=3600, debounce_s=0.3)
    quiet.start()
    wait_for(lambda: any(v.trigger == "schedule" for v in quiet.history()))
    for _ in range(20):  # a burst, well within the debounce
        event = xid_event(0, 79)
        registry.put(node_state("node-a", events=(event,)), kind="health", health=event)
    wait_for(lambda: any(v.trigger == "event" for v in quiet.history()))
    # A marker: one change on another node, made after the burst's check. Its own check comes a
    # debounce later, after any second check the burst could have caused; once the marker's check
    # is stored, every check of the burst is too, and there must have been exactly one.
    marker = xid_event(1, 79)
    registry.put(node_state("node-b", events=(marker,)), kind="health", health=marker)

    def sees_marker(v) -> bool:
        return v.trigger == "event" and any(r["node_id"] == "node-b" for r in (v.stability_check_data or {}).get("reasons", []))

    wait_for(lambda: any(sees_marker(v) for v in quiet.history()), what="the marker's event check")
    events = [v for v in reversed(quiet.history()) if v.trigger == "event"]  # oldest first
    assert [sees_marker(v) for v in events] == [False, True]  # the burst's one check, then the marker's
