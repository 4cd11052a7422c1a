"""Which policy a cluster document selects, and settings from the environment."""

import pytest

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import (
    ConfigError,
    PolicySelection,
    interval_from_env,
    select_policy,
)
from aggregator.stability.notify import KubernetesEventSink, WebhookSink
from aggregator.stability.wiring import build_stability
from tests.support.stability import InProcessRegistry

# Written out (not the module's constant): verdicts and the API report this name.
DEFAULT_URI = "aios-default-stability"


@pytest.mark.parametrize(
    "document, expected",
    [
        ({}, PolicySelection("/default", None, DEFAULT_URI)),
        ({"config": {}}, PolicySelection("/default", None, DEFAULT_URI)),
        ({"config": {"stabilityChecker": {}}}, PolicySelection("/default", None, DEFAULT_URI)),
        ({"config": {"stabilityChecker": {"policyRuleURI": "", "parameters": {"xid_window_s": 60}}}},
         PolicySelection("/default", {"xid_window_s": 60}, DEFAULT_URI)),
        ({"config": {"stabilityChecker": {"policyRuleURI": "stability-check:1.0-stable", "parameters": {"a": 1}}}},
         PolicySelection("stability-check:1.0-stable", {"a": 1}, "stability-check:1.0-stable")),
    ],
)
def test_select_policy(document, expected):
    assert select_policy(document, "/default") == expected


@pytest.mark.parametrize(
    "checker, message",
    [
        ("stability-check:1.0", "config.stabilityChecker: expected an object"),
        ({"policyRuleURI": 7}, "config.stabilityChecker.policyRuleURI: expected a string"),
        ({"policyRuleURI": "x:1.0-a", "parameters": [1]}, "config.stabilityChecker.parameters: expected an object"),
    ],
)
def test_select_policy_names_what_is_wrong(checker, message):
    with pytest.raises(ConfigError, match=message):
        select_policy({"config": {"stabilityChecker": checker}}, "/default")


def test_interval_from_env():
    assert interval_from_env({}) == 60.0
    assert interval_from_env({"CLUSTER_STABILITY_CHECK_INTERVAL": "15"}) == 15.0
    for bad in ("soon", "0", "-3"):
        with pytest.raises(ConfigError, match="CLUSTER_STABILITY_CHECK_INTERVAL"):
            interval_from_env({"CLUSTER_STABILITY_CHECK_INTERVAL": bad})


def test_build_stability_reads_the_environment(tmp_path):
    db = Database(tmp_path / "a.sqlite")
    parts = build_stability(
        cluster_id="c9", registry=InProcessRegistry(), db=db, cluster_store=ClusterStore(db),
        policy_config=PolicyConfig(cache_dir=tmp_path),
        env={"CLUSTER_STABILITY_CHECK_INTERVAL": "5", "AIOS_STABILITY_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
        core_v1=object(),
    )
    try:
        assert parts.checker.interval_s == 5.0
        sinks = parts.dispatcher.sinks
        assert [type(s) for s in sinks] == [WebhookSink, KubernetesEventSink]
        assert sinks[0].url == "http://127.0.0.1:9/hook"
        assert sinks[1].involved_object["name"] == "c9-controller" and sinks[1].namespace == "controllers"
        assert {r.path for r in parts.router.routes} == {
            "/check_stability", "/stability/verdicts", "/mgmt", "/nodes_status", "/healthy_nodes"}
    finally:
        parts.close()
        db.close()
    quiet_db = Database(tmp_path / "b.sqlite")
    quiet = build_stability(cluster_id="c9", registry=InProcessRegistry(), db=quiet_db, cluster_store=ClusterStore(quiet_db),
                            policy_config=PolicyConfig(cache_dir=tmp_path), env={})
    assert quiet.dispatcher is None and quiet.checker.interval_s == 60.0
    with pytest.raises(ValueError, match="AIOS_STABILITY_WEBHOOK_URL"):
        bad_db = Database(tmp_path / "c.sqlite")
        build_stability(cluster_id="c9", registry=InProcessRegistry(), db=bad_db, cluster_store=ClusterStore(bad_db),
                        policy_config=PolicyConfig(cache_dir=tmp_path), env={"AIOS_STABILITY_WEBHOOK_URL": "ftp://x"})
