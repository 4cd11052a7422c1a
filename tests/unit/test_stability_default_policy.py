"""The default stability policy package on literal nodes_data."""

import importlib.util
import json

import pytest

from aggregator.stability.checker import DEFAULT_POLICY_DIR


@pytest.fixture
def policy_module():
    spec = importlib.util.spec_from_file_location("default_stability_policy", DEFAULT_POLICY_DIR / "code" / "function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu(index, *, lost=False, xids=(), ecc=0, remap_failure=False, remap_pending=False, throttle=()):
    return {
        "id": index, "uuid": f"GPU-{index}", "utilization": 50.0,
        "memory": {"total": 81559, "usage_percent": 10.0},
        "lost": lost, "lost_reason": "NVML_ERROR_GPU_IS_LOST" if lost else None,
        "health": {
            "xids": [{"code": c, "count": 1, "first_time": t, "last_time": t, "age_s": age} for c, t, age in xids],
            "ecc_uncorrected_volatile": ecc, "ecc_uncorrectable_events": 0,
            "row_remap_failure": remap_failure, "row_remap_pending": remap_pending,
            "throttle": [{"reason": r, "since": 0.0, "duration_s": d} for r, d in throttle],
        },
    }


def node(node_id, gpus=(), *, stale=False, status="healthy"):
    return {"node_id": node_id, "status": "unhealthy" if stale else status, "state": "stale" if stale else status,
            "stale": stale, "seconds_since_seen": 95.0 if stale else 1.0, "gpus": list(gpus)}


def evaluate(rule, nodes, parameters=None):
    result = rule.eval(parameters, {"cluster_data": {}, "cluster": {}, "nodes_data": nodes}, {})
    json.dumps(result)  # what a worker sends back must be JSON
    return result


def reasons(result):
    return [(r["node_id"], r["gpu"], r["reason"]) for r in result["stability_check_data"]["reasons"]]


def test_healthy_cluster_is_stable(policy_module):
    rule = policy_module.AIOSv1PolicyRule("", {}, None)
    result = evaluate(rule, [node("a", [gpu(0), gpu(1, xids=[(13, 100.0, 5.0)])]), node("b")])
    assert result == {
        "is_stable": True,
        "stability_check_data": {"reasons": [], "unstable_nodes": [], "nodes_checked": 2, "gpus_checked": 2,
                                 "policy": "aios-default-stability"},
    }


@pytest.mark.parametrize(
    "nodes, expected",
    [
        ([node("a", [gpu(0), gpu(3, xids=[(79, 100.0, 1.0)])])], [("a", 3, "xid")]),
        ([node("a", [gpu(0, lost=True)])], [("a", 0, "gpu_lost")]),
        ([node("a"), node("b", stale=True)], [("b", None, "stale")]),
        ([node("a", [gpu(1, ecc=2)])], [("a", 1, "ecc_uncorrectable")]),
        ([node("a", [gpu(2, remap_failure=True)])], [("a", 2, "row_remap_failure")]),
        ([node("a", [gpu(0, throttle=[("hw_thermal_slowdown", 301.0)])])], [("a", 0, "throttle")]),
    ],
)
def test_each_failure_makes_the_cluster_unstable_naming_node_gpu_and_reason(policy_module, nodes, expected):
    rule = policy_module.AIOSv1PolicyRule("", {}, None)
    result = evaluate(rule, nodes)
    assert result["is_stable"] is False
    assert reasons(result) == expected


def test_what_does_not_count_by_default(policy_module):
    rule = policy_module.AIOSv1PolicyRule("", {}, None)
    nodes = [node("a", [
        gpu(0, throttle=[("hw_thermal_slowdown", 299.0), ("sw_power_cap", 10_000.0)]),
        gpu(1, xids=[(79, 100.0, 3601.0), (92, 100.0, 1.0)]),  # fatal but old; 92 not fatal
        gpu(2, remap_pending=True),
    ])]
    assert evaluate(rule, nodes + [node("b", status="unhealthy")])["is_stable"] is True
    assert reasons(evaluate(rule, nodes, {"row_remap_pending_is_fatal": True, "xid_window_s": 7200})) == [
        ("a", 1, "xid"), ("a", 2, "row_remap_pending"),
    ]
    assert reasons(evaluate(rule, [node("b", status="unhealthy")], {"unstable_on_unhealthy_nodes": True})) == [
        ("b", None, "node_unhealthy"),
    ]


def test_set_parameters_through_management_wins_and_reset_restores(policy_module):
    rule = policy_module.AIOSv1PolicyRule("", {}, {"throttle_threshold_s": 600})
    nodes = [node("a", [gpu(0, throttle=[("sw_thermal_slowdown", 400.0)])])]
    assert evaluate(rule, nodes)["is_stable"] is True
    answer = rule.management("set_parameters", {"parameters": {"throttle_threshold_s": 60}})
    assert answer["parameters"]["throttle_threshold_s"] == 60
    assert evaluate(rule, nodes, {"throttle_threshold_s": 600})["is_stable"] is False
    assert rule.management("get_state", {})["overrides"] == {"throttle_threshold_s": 60}
    rule.management("reset", {})
    assert evaluate(rule, nodes)["is_stable"] is True


def test_acknowledge_clears_seen_xids_and_a_new_one_counts_again(policy_module):
    rule = policy_module.AIOSv1PolicyRule("", {}, None)
    before = [node("a", [gpu(0, xids=[(79, 100.0, 1.0)])]), node("b", [gpu(0, xids=[(48, 90.0, 11.0)])])]
    assert reasons(evaluate(rule, before)) == [("a", 0, "xid"), ("b", 0, "xid")]
    acked = rule.management("acknowledge", {"node_id": "a"})
    assert acked == {"acknowledged": [{"node_id": "a", "gpu": 0, "xid": 79, "up_to": 100.0}]}
    assert reasons(evaluate(rule, before)) == [("b", 0, "xid")]
    again = [node("a", [gpu(0, xids=[(79, 150.0, 1.0)])])]
    assert reasons(evaluate(rule, again)) == [("a", 0, "xid")]


def test_bad_parameters_and_input_are_named(policy_module):
    with pytest.raises(policy_module.PolicyInputError, match="parameters.fatal_xids: expected a list of integers"):
        policy_module.AIOSv1PolicyRule("", {}, {"fatal_xids": ["79"]})
    rule = policy_module.AIOSv1PolicyRule("", {}, None)
    with pytest.raises(policy_module.PolicyInputError, match="parameters.xid_windows: unknown parameter"):
        rule.management("set_parameters", {"xid_windows": 5})
    with pytest.raises(policy_module.PolicyInputError, match=r"input_data.nodes_data\[1\]: expected an object"):
        evaluate(rule, [node("a"), "b"])
    with pytest.raises(policy_module.PolicyInputError, match="unknown management action 'explode'"):
        rule.management("explode", {})
