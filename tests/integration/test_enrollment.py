"""Enrollment of nodes that join after onboarding: pre-check, /api/addNode, stored document.

Real parts: the SQLite ClusterStore in a temp dir, the parser stand-in on
loopback, the worker thread. The registry's changes are fed as `NodeChange`s
carrying `NodeState`s, as `NodeRegistry.subscribe` delivers them.
"""

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

import pytest

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.onboarding.enrollment import Enrollment
from aggregator.onboarding.parser_client import ParserClient
from aggregator.telemetry.model import NodeChange, NodeState
from tests.integration.parser_standin import ParserStandIn
from tests.support.net import free_port
from tests.support.onboarding_data import (
    ENTRY_A,
    ENTRY_B,
    ENTRY_C,
    ENTRY_D,
    TOTALS_ABC,
    TOTALS_ABCD,
    expected_document,
    gpu_node_b,
    gpu_node_c,
    gpu_node_d,
)
from tests.support.policy_packages import write_directory
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
CLUSTER = "cluster-eu-1"
TOTALS_AB = {
    "gpus": {"count": 2, "memory": 30720}, "vcpus": {"count": 48}, "memory": 193108, "swap": 2047,
    "storage": {"disks": 3, "size": 3300384}, "network": {"interfaces": 3, "txBandwidth": 51000, "rxBandwidth": 51000},
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    input_data: Any


class RecordingGovernance:
    """Answers like `aggregator.governance.prechecks.Governance.precheck`, as the test says."""

    def __init__(self):
        self.calls = []
        self.answer = lambda action, data: Verdict(True, data)

    def precheck(self, action, input_data):
        self.calls.append((action, input_data))
        return self.answer(action, input_data)


def state(inventory):
    return NodeState(node_id=inventory.node_id, status="healthy", inventory=inventory, latest=None,
                     last_seen=100.0, first_seen=100.0)


def change(kind, inventory):
    return NodeChange(kind=kind, node=state(inventory), timestamp=100.0)


@pytest.fixture
def store(tmp_path):
    db = Database(tmp_path / "aggregator.db")
    yield ClusterStore(db)
    db.close()


@pytest.fixture
def onboarded(store):
    store.put(CLUSTER, expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC))
    return store


@pytest.fixture
def parser():
    standin = ParserStandIn()
    yield standin
    standin.close()


@pytest.fixture
def governance():
    return RecordingGovernance()


@pytest.fixture
def make_enrollment():
    made = []

    def make(store, governance, parser_client, **kw):
        kw.setdefault("retry_initial_s", 0.05)
        enrollment = Enrollment(store, CLUSTER, governance, parser_client, clock=lambda: 1234.0, **kw)
        enrollment.start()
        made.append(enrollment)
        return enrollment

    yield make
    for enrollment in made:
        enrollment.close()


def test_a_fourth_node_is_enrolled_once_even_when_its_hello_repeats(onboarded, parser, governance, make_enrollment):
    enrollment = make_enrollment(onboarded, governance, ParserClient(parser.url))
    before = onboarded.get(CLUSTER)
    for _ in range(3):
        enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    for _ in range(2):  # the agent reconnects later: nothing new
        enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)

    assert parser.problems == []
    assert [b["body"]["spec"]["values"] for b in parser.bodies("/api/addNode")] == [
        {"clusterId": CLUSTER, "nodeData": ENTRY_D}
    ]
    assert onboarded.get(CLUSTER) == expected_document([ENTRY_A, ENTRY_B, ENTRY_C, ENTRY_D], TOTALS_ABCD)
    assert governance.calls == [("add_node", {"node_data": ENTRY_D, "cluster_data": before, "cluster_metrics": {}})]
    assert [(r.node_id, r.action, r.outcome) for r in enrollment.records()] == [("node-d", "add_node", "enrolled")]


def test_changes_wait_for_start_and_nothing_runs_before(onboarded, governance):
    enrollment = Enrollment(onboarded, CLUSTER, governance, None, clock=lambda: 1234.0, retry_initial_s=0.05)
    try:
        enrollment.on_change(change("joined", gpu_node_d()))
        assert not enrollment.wait_idle(0)  # queued, no worker yet
        assert governance.calls == [] and "node-d" not in [e["id"] for e in onboarded.get(CLUSTER)["nodes"]["nodeData"]]
        enrollment.start()
        assert enrollment.wait_idle(10)
        assert [(r.node_id, r.outcome) for r in enrollment.records()] == [("node-d", "enrolled")]
    finally:
        enrollment.close()


def test_the_policys_node_data_is_the_one_used(onboarded, parser, governance, make_enrollment):
    def tag(action, data):
        return Verdict(True, {**data, "node_data": {**data["node_data"], "tags": ["policy-approved"]}})

    governance.answer = tag
    enrollment = make_enrollment(onboarded, governance, ParserClient(parser.url),
                                 cluster_metrics=lambda: {"nodes_healthy": 3})
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert governance.calls[0][1]["cluster_metrics"] == {"nodes_healthy": 3}
    assert parser.problems == []
    assert parser.bodies("/api/addNode")[0]["body"]["spec"]["values"]["nodeData"] == {**ENTRY_D, "tags": ["policy-approved"]}
    assert onboarded.get(CLUSTER)["nodes"]["nodeData"][-1] == {**ENTRY_D, "tags": ["policy-approved"]}


def test_a_refused_pre_check_leaves_the_node_out_and_says_why(onboarded, parser, governance, make_enrollment):
    governance.answer = lambda action, data: Verdict(False, "node-d: T4 GPUs are not accepted in this cluster")
    enrollment = make_enrollment(onboarded, governance, ParserClient(parser.url))
    before = onboarded.get(CLUSTER)
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert parser.requests == []
    assert onboarded.get(CLUSTER) == before
    refusal = enrollment.refusals()["node-d"]
    assert (refusal.action, refusal.detail, refusal.timestamp) == (
        "add_node", "add_node pre-check: node-d: T4 GPUs are not accepted in this cluster", 1234.0)


def test_a_parser_refusal_leaves_the_node_out(onboarded, parser, make_enrollment):
    parser.mode = "refuse"
    parser.refusal_message = "add_node pre-check: cluster is full"
    enrollment = make_enrollment(onboarded, None, ParserClient(parser.url))
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert len(parser.requests) == 1
    assert "node-d" not in [e["id"] for e in onboarded.get(CLUSTER)["nodes"]["nodeData"]]
    assert enrollment.refusals()["node-d"].detail == "parser (HTTP 400): add_node pre-check: cluster is full"


def test_without_a_parser_the_node_is_added_to_the_stored_document(onboarded, make_enrollment):
    enrollment = make_enrollment(onboarded, None, None)
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert onboarded.get(CLUSTER) == expected_document([ENTRY_A, ENTRY_B, ENTRY_C, ENTRY_D], TOTALS_ABCD)


def test_nothing_happens_before_the_cluster_is_onboarded(store, parser, governance, make_enrollment):
    enrollment = make_enrollment(store, governance, ParserClient(parser.url))
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert parser.requests == [] and governance.calls == [] and store.ids() == []


def test_network_failure_is_retried_until_the_parser_answers(onboarded, governance, make_enrollment, caplog):
    port = free_port()
    client = ParserClient(f"http://127.0.0.1:{port}", attempts=1, timeout_s=2)
    enrollment = make_enrollment(onboarded, governance, client, retry_max_s=0.2)
    caplog.set_level(logging.WARNING, logger="aggregator.onboarding.enrollment")
    enrollment.on_change(change("joined", gpu_node_d()))
    wait_for(lambda: "retry 2 in" in caplog.text, timeout_s=10, what="two failed attempts (the parser is down)")
    assert "node-d" not in [e["id"] for e in onboarded.get(CLUSTER)["nodes"]["nodeData"]]
    parser = ParserStandIn(port=port)  # the parser comes (back) up
    try:
        assert enrollment.wait_idle(10)
        assert len(parser.bodies("/api/addNode")) == 1 and parser.problems == []
    finally:
        parser.close()
    assert onboarded.get(CLUSTER)["nodes"]["count"] == 4
    assert len(governance.calls) >= 3  # re-checked on every attempt: the document may have changed


def test_a_pre_check_that_cannot_run_is_retried(onboarded, governance, make_enrollment):
    attempts = []

    def flaky(action, data):
        attempts.append(action)
        if len(attempts) < 3:
            raise ConnectionError("policy executor unreachable")
        return Verdict(True, data)

    governance.answer = flaky
    enrollment = make_enrollment(onboarded, governance, None, retry_max_s=0.1)
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    assert attempts == ["add_node"] * 3
    assert onboarded.get(CLUSTER)["nodes"]["count"] == 4


def test_a_deleted_node_is_removed_after_the_remove_node_pre_check(onboarded, parser, governance, make_enrollment):
    enrollment = make_enrollment(onboarded, governance, ParserClient(parser.url))
    before = onboarded.get(CLUSTER)
    enrollment.on_change(change("removed", gpu_node_c()))
    assert enrollment.wait_idle(10)
    assert governance.calls == [("remove_node", {"node_id": "node-c", "cluster_data": before,
                                                 "cluster_metrics": {}, "block_instances": []})]
    assert onboarded.get(CLUSTER) == expected_document([ENTRY_A, ENTRY_B], TOTALS_AB)
    assert parser.requests == []  # the parser has no remove call
    enrollment.on_change(change("removed", gpu_node_c()))  # again: nothing left to do
    assert enrollment.wait_idle(10)
    assert len(governance.calls) == 1


def test_a_refused_removal_keeps_the_node(onboarded, governance, make_enrollment):
    governance.answer = lambda action, data: Verdict(False, {"reason": "node-c runs block llm-7"})
    enrollment = make_enrollment(onboarded, governance, None)
    enrollment.on_change(change("removed", gpu_node_c()))
    assert enrollment.wait_idle(10)
    assert onboarded.get(CLUSTER)["nodes"]["count"] == 3
    assert enrollment.refusals()["node-c"].detail == "remove_node pre-check: {'reason': 'node-c runs block llm-7'}"


def _worker_held_on_node_e(onboarded, governance, make_enrollment):
    """An enrollment whose worker is busy with node-e's add_node pre-check until `release` is set."""
    release = threading.Event()

    def slow(action, data):
        release.wait(10)
        return Verdict(True, data)

    governance.answer = slow
    enrollment = make_enrollment(onboarded, governance, None)
    enrollment.on_change(change("joined", replace(gpu_node_d(), node_id="node-e")))
    wait_for(lambda: governance.calls, timeout_s=10, what="the pre-check call", every_s=0.01)
    return enrollment, release


def test_the_latest_change_per_node_wins_while_queued(onboarded, governance, make_enrollment):
    enrollment, release = _worker_held_on_node_e(onboarded, governance, make_enrollment)
    enrollment.on_change(change("joined", gpu_node_d()))
    enrollment.on_change(change("removed", gpu_node_d()))  # replaces the queued "joined"
    release.set()
    assert enrollment.wait_idle(10)
    assert [e["id"] for e in onboarded.get(CLUSTER)["nodes"]["nodeData"]] == ["node-a", "node-b", "node-c", "node-e"]
    assert [call[1]["node_data"]["id"] for call in governance.calls] == ["node-e"]


def test_changes_after_close_are_dropped(onboarded, make_enrollment):
    enrollment = make_enrollment(onboarded, None, None)
    enrollment.close()  # the worker is stopped: changes are dropped, not half-applied
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(1)
    assert onboarded.get(CLUSTER)["nodes"]["count"] == 3


ADD_NODE_POLICY = '''
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.max_gpus = (parameters or {}).get("max_gpus", 4)

    def eval(self, parameters, input_data, context):
        node = input_data["node_data"]
        if node["gpus"]["count"] > self.max_gpus:
            return {"allowed": False,
                    "input_data": f"{node['id']}: {node['gpus']['count']} GPUs, this cluster takes at most {self.max_gpus}"}
        return {"allowed": True, "input_data": dict(input_data, node_data=dict(node, tags=["admitted"]))}
'''


def test_with_the_real_governance_and_an_add_node_policy(tmp_path, onboarded, parser, make_enrollment):
    import functools

    from aggregator.governance.prechecks import Governance
    from aggregator.policies import open_policy
    from aggregator.policies.config import PolicyConfig

    policy = write_directory(tmp_path / "add-node-policy", ADD_NODE_POLICY)
    db = Database(tmp_path / "governance.db")
    governance = Governance(db, functools.partial(open_policy, config=PolicyConfig(cache_dir=tmp_path / "cache")))
    governance.update({"add_node": str(policy)})
    try:
        onboarded.put(CLUSTER, expected_document([ENTRY_A, ENTRY_B], TOTALS_AB))  # node-c is not in yet
        enrollment = make_enrollment(onboarded, governance, ParserClient(parser.url))
        enrollment.on_change(change("joined", gpu_node_c()))  # 8 GPUs: refused
        enrollment.on_change(change("joined", gpu_node_d()))  # 1 GPU: admitted, tagged by the policy
        assert enrollment.wait_idle(30)
    finally:
        governance.update({"add_node": ""})  # closes the policy's worker process
        db.close()
    assert parser.problems == []
    assert [b["body"]["spec"]["values"]["nodeData"] for b in parser.bodies("/api/addNode")] == [
        {**ENTRY_D, "tags": ["admitted"]}
    ]
    assert [e["id"] for e in onboarded.get(CLUSTER)["nodes"]["nodeData"]] == ["node-a", "node-b", "node-d"]
    assert enrollment.refusals()["node-c"].detail == "add_node pre-check: node-c: 8 GPUs, this cluster takes at most 4"


def test_the_document_and_the_records_are_read_over_http(tmp_path, onboarded, governance, make_enrollment):
    import json
    import urllib.request

    from aggregator.governance.prechecks import Governance
    from aggregator.onboarding.http_routes import enrollment_router
    from aggregator.web.app import create_app
    from aggregator.web.serving import start_http_in_thread

    governance.answer = lambda action, data: (Verdict(False, "no 8-GPU nodes") if data["node_data"]["gpus"]["count"] == 8
                                              else Verdict(True, data))
    onboarded.put(CLUSTER, expected_document([ENTRY_A, ENTRY_B], TOTALS_AB))
    enrollment = make_enrollment(onboarded, governance, None)
    enrollment.on_change(change("joined", gpu_node_c()))
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    db = Database(tmp_path / "governance.db")
    server = start_http_in_thread(create_app(governance=Governance(db, lambda uri: None), cluster_store=onboarded,
                                             tokens=["t"], routers=[enrollment_router(enrollment)]))

    def get(path):
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    try:
        document, records = get(f"/clusters/read/{CLUSTER}"), get("/enrollment/records")
    finally:
        server.stop()
        db.close()
    assert document == {"success": True, "data": expected_document([ENTRY_A, ENTRY_B, ENTRY_D], {
        "gpus": {"count": 3, "memory": 46080}, "vcpus": {"count": 112}, "memory": 708998, "swap": 6142,
        "storage": {"disks": 4, "size": 5208113},
        "network": {"interfaces": 4, "txBandwidth": 151000, "rxBandwidth": 151000}})}
    assert records == {"success": True, "records": [
        {"timestamp": 1234.0, "node_id": "node-c", "action": "add_node", "outcome": "refused",
         "detail": "add_node pre-check: no 8-GPU nodes"},
        {"timestamp": 1234.0, "node_id": "node-d", "action": "add_node", "outcome": "enrolled",
         "detail": "3 nodes in the cluster"},
    ]}


# ---------------------------------------------------------------- inventory changes of enrolled nodes

ENTRY_C_7_GPUS = {**ENTRY_C, "gpus": {**ENTRY_C["gpus"], "count": 7, "memory": 570913,
                                      "gpus": [{"modelName": "NVIDIA H100 80GB HBM3", "memory": 81559}] * 7}}
TOTALS_ABC_7_GPUS = {**TOTALS_ABC, "gpus": {"count": 9, "memory": 601633}}
OPERATOR_FIELDS = {"tags": ["rack-12"], "nodeMetadata": {"owner": "ml-infra"}}


def node_c_losing_a_gpu():
    inventory = gpu_node_c()
    return replace(inventory, gpus=inventory.gpus[:7])


def stored_text(store):
    return store._db.query("SELECT document, updated_at FROM cluster_documents WHERE cluster_id = ?",
                           (CLUSTER,))[0]


def test_an_enrolled_node_losing_a_gpu_updates_its_entry_and_the_totals(store, parser, governance, make_enrollment):
    # node-c in the middle, with fields an operator set: both kept
    store.put(CLUSTER, expected_document([ENTRY_A, {**ENTRY_C, **OPERATOR_FIELDS}, ENTRY_B], TOTALS_ABC))
    enrollment = make_enrollment(store, governance, ParserClient(parser.url))
    enrollment.on_change(change("inventory", node_c_losing_a_gpu()))
    assert enrollment.wait_idle(10)

    assert store.get(CLUSTER) == expected_document(
        [ENTRY_A, {**ENTRY_C_7_GPUS, **OPERATOR_FIELDS}, ENTRY_B], TOTALS_ABC_7_GPUS)
    assert parser.requests == [] and governance.calls == []  # no update call, no second pre-check
    assert [(r.node_id, r.action, r.outcome, r.detail) for r in enrollment.records()] == [
        ("node-c", "update_node", "updated", "gpus changed; 3 nodes in the cluster")]

    enrollment.on_change(change("inventory", gpu_node_c()))  # the GPU is back
    assert enrollment.wait_idle(10)
    assert store.get(CLUSTER) == expected_document([ENTRY_A, {**ENTRY_C, **OPERATOR_FIELDS}, ENTRY_B], TOTALS_ABC)


def test_an_unchanged_inventory_writes_nothing(onboarded, make_enrollment):
    enrollment = make_enrollment(onboarded, None, None)
    before = stored_text(onboarded)
    enrollment.on_change(change("inventory", gpu_node_c()))
    enrollment.on_change(change("joined", gpu_node_b()))  # a repeated hello, same inventory
    assert enrollment.wait_idle(10)
    assert stored_text(onboarded) == before
    assert enrollment.records() == []


def test_a_repeated_hello_with_a_changed_inventory_refreshes_the_entry(onboarded, governance, make_enrollment):
    # e.g. the aggregator restarted while node-c lost a GPU: its registry says "joined"
    enrollment = make_enrollment(onboarded, governance, None)
    enrollment.on_change(change("joined", node_c_losing_a_gpu()))
    assert enrollment.wait_idle(10)
    assert onboarded.get(CLUSTER) == expected_document([ENTRY_A, ENTRY_B, ENTRY_C_7_GPUS], TOTALS_ABC_7_GPUS)
    assert governance.calls == []


def test_a_refused_nodes_inventory_change_does_not_add_it(onboarded, governance, make_enrollment):
    governance.answer = lambda action, data: Verdict(False, "node-d: T4 GPUs are not accepted in this cluster")
    enrollment = make_enrollment(onboarded, governance, None)
    enrollment.on_change(change("joined", gpu_node_d()))
    assert enrollment.wait_idle(10)
    before = stored_text(onboarded)
    enrollment.on_change(change("inventory", replace(gpu_node_d(), gpus=())))
    assert enrollment.wait_idle(10)
    assert stored_text(onboarded) == before
    assert [(r.node_id, r.outcome) for r in enrollment.records()] == [("node-d", "refused")]
    assert len(governance.calls) == 1


def test_an_inventory_change_does_not_replace_a_queued_join(onboarded, governance, make_enrollment):
    enrollment, release = _worker_held_on_node_e(onboarded, governance, make_enrollment)
    enrollment.on_change(change("joined", replace(gpu_node_d(), gpus=())))
    enrollment.on_change(change("inventory", gpu_node_d()))  # the join goes ahead, with this inventory
    release.set()
    assert enrollment.wait_idle(10)
    assert onboarded.get(CLUSTER)["nodes"]["nodeData"][-1] == ENTRY_D
    assert [call[1]["node_data"]["id"] for call in governance.calls] == ["node-e", "node-d"]
