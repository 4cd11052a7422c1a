"""The pre-check map's update semantics and how pre-checks treat policies (fakes for the policies)."""

import pytest

from aggregator.db import Database
from aggregator.governance.prechecks import ACTIONS, Governance, InvalidPolicyMap, UnknownAction
from aggregator.policies import PolicyError, PolicyHandle


class FakePolicy(PolicyHandle):
    mode = "local"

    def __init__(self, uri, answer):
        self.uri = self.label = uri
        self.answer = answer
        self.closed = False
        self.inputs = []

    def eval(self, input_data, parameters=None):
        self.inputs.append(input_data)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def management(self, action, data):
        raise PolicyError("none")

    def close(self):
        self.closed = True


@pytest.fixture
def world(tmp_path):
    answers = {}
    opened = []

    def opener(uri):
        if uri not in answers:
            raise PolicyError(f"policy {uri}: policy DB lookup failed: HTTP 404")
        opened.append(FakePolicy(uri, answers[uri]))
        return opened[-1]

    db = Database(tmp_path / "g.db")
    yield Governance(db, opener, clock=lambda: 1000.0), answers, opened
    db.close()


def test_every_contract_action_is_accepted():
    assert set(ACTIONS) >= {"add_node", "remove_node", "update_cluster", "scale_block", "add_block", "remove_block",
                            "add_vdag_controller", "remove_vdag_controller", "block_mgmt", "cluster_mgmt",
                            "add_cluster", "remove_cluster"}


def test_update_sets_removes_and_keeps(world):
    governance, _, _ = world
    governance.update({"add_node": "a:1-s", "remove_node": "r:1-s", "block_mgmt": "b:1-s"})
    assert governance.update({"add_node": "a:2-s", "remove_node": ""}) == {"add_node": "a:2-s", "block_mgmt": "b:1-s"}


def test_invalid_updates_change_nothing(world):
    governance, _, _ = world
    governance.update({"add_node": "a:1-s"})
    with pytest.raises(UnknownAction, match="'fly', 'swim'"):
        governance.update({"remove_node": "", "swim": "x", "fly": ""})
    with pytest.raises(InvalidPolicyMap, match="add_node: the value must be"):
        governance.update({"add_node": None})
    with pytest.raises(InvalidPolicyMap, match="must be a JSON object"):
        governance.update(["add_node"])
    assert governance.policy_map() == {"add_node": "a:1-s"}


def test_no_policy_allows_with_input_unchanged(world):
    governance, _, opened = world
    verdict = governance.precheck("add_node", {"node_data": {"id": "n"}})
    assert (verdict.allowed, verdict.input_data, verdict.policy_uri) == (True, {"node_data": {"id": "n"}}, None)
    assert opened == []
    with pytest.raises(UnknownAction):
        governance.precheck("nope", {})


def test_policies_are_cached_per_uri_and_replaced_when_the_uri_changes(world):
    governance, answers, opened = world
    answers["a:1-s"] = {"allowed": True, "input_data": {"changed": 1}}
    answers["a:2-s"] = {"allowed": False, "input_data": "too many nodes"}
    governance.update({"add_node": "a:1-s", "add_block": "a:1-s"})
    assert governance.precheck("add_node", {}).input_data == {"changed": 1}
    assert governance.precheck("add_block", {}).allowed
    assert len(opened) == 1  # one load for both actions
    governance.update({"add_node": "a:2-s"})
    assert not opened[0].closed  # add_block still uses it
    verdict = governance.precheck("add_node", {})
    assert (verdict.allowed, verdict.reason, verdict.policy_uri) == (False, "too many nodes", "a:2-s")
    governance.update({"add_block": ""})
    assert opened[0].closed and not opened[1].closed


@pytest.mark.parametrize(
    "answer, reason",
    [
        (PolicyError("policy x:1-s: eval failed: ValueError: bad"), "failed: policy x:1-s: eval failed: ValueError: bad"),
        ({"allowed": "yes", "input_data": {}}, "without a boolean 'allowed'"),
        ({"allowed": True}, "without a boolean 'allowed' and an 'input_data'"),
    ],
)
def test_failing_or_malformed_policies_refuse(world, answer, reason):
    governance, answers, _ = world
    answers["x:1-s"] = answer
    governance.update({"cluster_mgmt": "x:1-s"})
    verdict = governance.precheck("cluster_mgmt", {"cluster_data": {}, "input": {"action": "a", "payload": {}}})
    assert verdict.allowed is False and reason in verdict.reason


def test_a_policy_that_cannot_load_refuses_and_is_retried_next_time(world):
    governance, answers, _ = world
    governance.update({"remove_node": "late:1-s"})
    verdict = governance.precheck("remove_node", {"node_id": "n"})
    assert not verdict.allowed and "HTTP 404" in verdict.reason
    answers["late:1-s"] = {"allowed": True, "input_data": {"node_id": "n"}}
    assert governance.precheck("remove_node", {"node_id": "n"}).allowed


def test_seed_fills_only_empty_actions(world):
    governance, _, _ = world
    governance.update({"add_node": "mine:1-s"})
    assert governance.seed({"add_node": "cfg:1-s", "remove_node": "cfg:1-s", "bogus_empty": ""}) == {
        "add_node": "mine:1-s", "remove_node": "cfg:1-s"}
