"""The quarantine's pure parts: the budget, the decisions, the settings, what the policy may name."""

import pytest

from aggregator.quarantine.config import QuarantineConfig, QuarantineConfigError
from aggregator.quarantine.controller import policy_named_nodes
from aggregator.quarantine.kube import quarantine_patch, release_patch, taint_value
from aggregator.quarantine.plan import Blocked, NodeHealth, plan
from aggregator.telemetry.node_watch import KubeNode, NodeTaint

NOW = 1_764_400_000.0


def sick(node_id, severity=3, since=NOW - 10, reason="XidNeedsNodeReboot"):
    return NodeHealth(node_id, True, reason, f"{node_id}: XID 79", (1,), severity, since)


def actions(decisions):
    return {d.node_id: d.action for d in decisions}


def run(healths, occupying=None, reasons=None, cycles=None, budget=3, max_cycles=3, blocked=None, known=None):
    healths = {h.node_id: h for h in healths}
    occupying = occupying or {}
    return plan(healths, occupying, reasons or {n: "XidNeedsNodeReboot" for n in occupying}, cycles or {}, budget,
                max_cycles, blocked or {}, set(known or occupying), NOW)


def test_ten_failing_with_a_budget_of_three():
    decisions = run([sick(f"n{i}", since=NOW - 100 + i) for i in range(10)])
    got = actions(decisions)
    assert sorted(n for n, a in got.items() if a == "quarantine") == ["n0", "n1", "n2"]  # the longest-standing first
    assert sorted(n for n, a in got.items() if a == "over_budget") == [f"n{i}" for i in range(3, 10)]


def test_the_most_demanding_recovery_goes_first_and_held_slots_count():
    decisions = run([sick("a", severity=2), sick("b", severity=4), sick("c", severity=3), sick("d")],
                    occupying={"d": "quarantined", "x": "held"})
    assert actions(decisions) == {"d": "keep", "b": "quarantine", "a": "over_budget", "c": "over_budget", "x": "release"}


def test_a_slot_freed_now_is_given_out_next_round():
    decisions = run([sick("new")], occupying={"a": "quarantined", "b": "quarantined", "c": "quarantined"})
    assert actions(decisions) == {"new": "over_budget", "a": "release", "b": "release", "c": "release"}


def test_a_flapping_node_is_held_not_released():
    decisions = run([], occupying={"a": "quarantined", "b": "quarantined"}, cycles={"a": 3, "b": 2})
    assert actions(decisions) == {"a": "hold", "b": "release"}


def test_dry_run_would_quarantine_is_never_held():
    assert actions(run([], occupying={"a": "would_quarantine"}, cycles={"a": 9})) == {"a": "release"}


def test_a_new_reason_retaints():
    decisions = run([sick("a", reason="GpuLost")], occupying={"a": "quarantined"}, reasons={"a": "XidNeedsGpuReset"})
    assert actions(decisions) == {"a": "retaint"}


def test_a_refusal_stands_until_its_time_unless_the_reason_changes():
    refused = {"a": Blocked("quarantine", "XidNeedsNodeReboot", NOW + 60, "refused")}
    assert actions(run([sick("a")], blocked=refused, known={"a"})) == {"a": "refused"}
    assert actions(run([sick("a", reason="GpuLost")], blocked=refused, known={"a"})) == {"a": "quarantine"}
    late = {"a": Blocked("quarantine", "XidNeedsNodeReboot", NOW - 1, "refused")}
    assert actions(run([sick("a")], blocked=late, known={"a"})) == {"a": "quarantine"}


def test_what_a_healthy_node_left_behind_is_cleared():
    assert actions(run([NodeHealth("a", False)], known={"a"})) == {"a": "clear"}


@pytest.mark.parametrize(("nodes", "max_nodes", "percent", "expected"), [
    (10, 3, 100, 3), (10, 5, 25, 2), (4, 5, 25, 1), (3, 5, 25, 1), (3, 5, 0, 0), (0, 5, 25, 0), (1000, 5, 25, 5), (10, 0, 100, 0),
])
def test_budget_is_the_smaller_of_the_two(nodes, max_nodes, percent, expected):
    assert QuarantineConfig(max_nodes=max_nodes, max_percent=percent).budget(nodes) == expected


def test_settings_from_the_environment_and_their_errors():
    config = QuarantineConfig.from_env({"AIOS_QUARANTINE": "cordon", "AIOS_QUARANTINE_MAX_NODES": "2",
                                        "AIOS_QUARANTINE_TAINT_EFFECT": "NoExecute"})
    assert (config.mode, config.max_nodes, config.taint_effect, config.writes) == ("cordon", 2, "NoExecute", True)
    assert QuarantineConfig.from_env({}).mode == "dry-run"
    with pytest.raises(QuarantineConfigError, match="AIOS_QUARANTINE='on': expected one of off, dry-run, taint, cordon"):
        QuarantineConfig.from_env({"AIOS_QUARANTINE": "on"})
    with pytest.raises(QuarantineConfigError, match="AIOS_QUARANTINE_MAX_PERCENT='half'"):
        QuarantineConfig.from_env({"AIOS_QUARANTINE_MAX_PERCENT": "half"})
    with pytest.raises(QuarantineConfigError, match="AIOS_QUARANTINE_TAINT_EFFECT='PreferNoSchedule'"):
        QuarantineConfig.from_env({"AIOS_QUARANTINE_TAINT_EFFECT": "PreferNoSchedule"})


def test_the_policy_may_name_nodes_as_ids_or_objects():
    data = {"quarantine_nodes": ["n1", {"node_id": "n2", "reason": "FabricDown"}, 7, {"reason": "no id"}]}
    assert policy_named_nodes(data) == {"n1": "", "n2": "FabricDown"}
    assert policy_named_nodes({"quarantine_nodes": "n1"}) == {}
    assert policy_named_nodes(None) == {}


def test_the_taint_patch_keeps_every_other_taint():
    node = KubeNode("n1", "n1", taints=(NodeTaint("team/dedicated", "ml", "NoSchedule"),), resource_version="42")
    patch, after = quarantine_patch(node, "XidNeedsNodeReboot", "NoSchedule", cordon=True, now=NOW)
    assert patch == {
        "metadata": {"resourceVersion": "42"},
        "spec": {
            "taints": [
                {"key": "team/dedicated", "value": "ml", "effect": "NoSchedule"},
                {"key": "gpu.aios/unhealthy", "value": "XidNeedsNodeReboot", "effect": "NoSchedule",
                 "timeAdded": "2025-11-29T07:06:40Z"},
            ],
            "unschedulable": True,
        },
    }
    assert quarantine_patch(after, "XidNeedsNodeReboot", "NoSchedule", cordon=True, now=NOW)[0] is None
    released, back = release_patch(after, uncordon=True)
    assert released == {"metadata": {"resourceVersion": "42"},
                        "spec": {"taints": [{"key": "team/dedicated", "value": "ml", "effect": "NoSchedule"}],
                                 "unschedulable": False}}
    assert back.taints == node.taints and not back.unschedulable
    # an operator's cordon is not ours to lift
    cordoned = KubeNode("n2", "n2", unschedulable=True)
    assert release_patch(cordoned, uncordon=False) == (None, cordoned)


def test_taint_values_are_label_values():
    assert taint_value("XidNeedsNodeReboot") == "XidNeedsNodeReboot"
    assert taint_value("fabric down!") == "fabricdown"
    assert taint_value("!!!") == "Unhealthy"
    assert len(taint_value("A" * 100)) == 63
