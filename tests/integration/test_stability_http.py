"""The stability routes in the aggregator's app (aggregator.web.app) on a real uvicorn server (docs/network-formats.md §5)."""

import time

import pytest

from aggregator.auth import AccessTokens
from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import StabilityChecker, policy_opener
from aggregator.stability.http_routes import create_stability_router
from aggregator.stability.verdicts import VerdictStore
from aggregator.web.app import create_app
from proto.telemetry.v1.readings import HealthEvent
from tests.support.policy_packages import write_directory
from tests.support.served_app import ServedApp
from tests.support.stability import InProcessRegistry, node_state
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
READ_TOKEN = "r3ad-only-token"
CLUSTER = "cluster-http"


@pytest.fixture
def served(tmp_path):
    db = Database(tmp_path / "aggregator.sqlite")
    clusters = ClusterStore(db)
    registry = InProcessRegistry([node_state("node-a", gpus=8), node_state("cpu-b", gpus=0)])
    checker = StabilityChecker(
        cluster_id=CLUSTER, registry=registry, cluster_store=clusters, verdicts=VerdictStore(db),
        open_policy=policy_opener(PolicyConfig(cache_dir=tmp_path / "cache", call_timeout_s=10)),
    )
    config = PolicyConfig(cache_dir=tmp_path / "cache", call_timeout_s=10)
    app = create_app(
        governance=Governance(db, lambda uri: policy_opener(config)(uri, None)),
        cluster_store=clusters,
        tokens=AccessTokens(write=(TOKEN,), read=(READ_TOKEN,)),
        routers=[create_stability_router(checker)],
    )
    server = ServedApp(app, read_token=READ_TOKEN)
    yield server, registry, clusters, tmp_path
    server.close()
    checker.close()
    db.close()


def test_check_stability_answers_the_policys_verdict_and_follows_an_xid(served):
    server, registry, _, _ = served
    status, body = server.request("GET", "/check_stability")
    assert status == 200
    assert (body["success"], body["is_stable"], body["outcome"]) == (True, True, "stable")
    assert body["stability_check_data"]["gpus_checked"] == 8

    event = HealthEvent(kind="xid", timestamp=time.time(), gpu_index=5, xid=79)
    registry.put(node_state("node-a", gpus=8, events=(event,)), kind="health", health=event)
    status, body = server.request("GET", "/check_stability")
    assert status == 200 and body["is_stable"] is False
    assert [(r["node_id"], r["gpu"], r["xid"]) for r in body["stability_check_data"]["reasons"]] == [("node-a", 5, 79)]

    status, body = server.request("GET", "/stability/verdicts?limit=5")
    assert status == 200 and [v["outcome"] for v in body["verdicts"]] == ["unstable", "stable"]


def test_nodes_status_and_healthy_nodes_come_from_measured_data(served):
    server, registry, _, _ = served
    registry.put(node_state("stale-c", gpus=1, now=time.time() - 300, status="stale"))
    status, body = server.request("GET", "/nodes_status")
    assert status == 200 and body["success"] is True
    by_id = {n["node_id"]: n for n in body["nodes_status"]}
    assert sorted(by_id) == ["cpu-b", "node-a", "stale-c"]
    node_a = by_id["node-a"]
    assert (node_a["status"], node_a["cpu_utilization_percent"]) == ("healthy", 12.5)
    assert node_a["memory"] == {"total": 64_000, "allocatable": 48_000, "usage_percent": 25.0}
    assert node_a["disk"] == {"total": 500_000, "allocatable": 400_000, "usage_percent": 20.0}
    assert [(g["id"], g["utilization"], g["memory"]["total"], g["memory"]["usage_percent"]) for g in node_a["gpus"]] == [
        (i, 40.0, 81_920, 25.0) for i in range(8)
    ]
    assert (by_id["stale-c"]["status"], by_id["stale-c"]["state"]) == ("unhealthy", "stale")
    status, body = server.request("GET", "/healthy_nodes")
    assert (status, body) == (200, {"success": True, "nodes": ["cpu-b", "node-a"]})


def test_mgmt_needs_the_token_and_changes_what_the_next_check_says(served):
    server, registry, _, _ = served
    throttled = node_state("node-a", gpus=8, throttle={2: ("hw_thermal_slowdown",)}, now=time.time() - 30)
    registry.put(throttled)
    server.request("GET", "/nodes_status")  # the throttle is first seen here
    registry.put(node_state("node-a", gpus=8, throttle={2: ("hw_thermal_slowdown",)}))
    status, body = server.request("GET", "/check_stability")
    assert body["is_stable"] is True  # about 30 s of throttling: under the default 300 s

    request = {"block_id": "", "service": "stability_checker", "mgmt_action": "set_parameters",
               "mgmt_data": {"parameters": {"throttle_threshold_s": 10}}}
    status, body = server.request("POST", "/mgmt", request)
    assert status == 401 and body["success"] is False
    status, body = server.request("POST", "/mgmt", request, token="wrong")
    assert status == 401
    status, body = server.request("POST", "/mgmt", request, token=TOKEN)
    assert status == 200 and body["success"] is True
    assert body["data"]["parameters"]["throttle_threshold_s"] == 10

    status, body = server.request("GET", "/check_stability")
    assert body["is_stable"] is False
    assert [(r["node_id"], r["gpu"], r["reason"], r["throttle_reason"]) for r in body["stability_check_data"]["reasons"]] == [
        ("node-a", 2, "throttle", "hw_thermal_slowdown")
    ]
    status, body = server.request("POST", "/mgmt", {**request, "mgmt_action": "get_state", "mgmt_data": {}}, token=TOKEN)
    assert body["data"]["overrides"] == {"throttle_threshold_s": 10}


@pytest.mark.parametrize(
    "request_body, raw, message",
    [
        ({"block_id": "", "service": "inference", "mgmt_action": "get_state"}, None, "service: expected 'stability_checker'"),
        ({"block_id": "b-1", "service": "stability_checker", "mgmt_action": "get_state"}, None, "block_id"),
        ({"block_id": "", "service": "stability_checker"}, None, "mgmt_action: expected a non-empty string"),
        (
            {"block_id": "", "service": "stability_checker", "mgmt_action": "x", "mgmt_data": [1]},
            None,
            "mgmt_data: expected an object",
        ),
        (None, b"{not json", "invalid JSON body: Expecting property name"),
        (None, b'{"service": "stability_checker", "mgmt_action": "x", "mgmt_data": {"v": NaN}}',
         "request body $.mgmt_data.v: NaN is not JSON"),
    ],
)
def test_mgmt_refuses_bad_requests_with_a_clear_message(served, request_body, raw, message):
    server = served[0]
    status, body = server.request("POST", "/mgmt", request_body, token=TOKEN, raw=raw)
    assert status == 400 and body["success"] is False and message in body["message"]


def test_policy_failures_are_reported_as_errors(served):
    server, _, clusters, tmp_path = served
    status, body = server.request("POST", "/mgmt", {"block_id": "", "service": "stability_checker",
                                                     "mgmt_action": "explode", "mgmt_data": {}}, token=TOKEN)
    assert status == 400 and body["success"] is False and "unknown management action 'explode'" in body["message"]

    package = write_directory(tmp_path / "raising", (
        "class AIOSv1PolicyRule:\n"
        "    def __init__(self, rule_id, settings, parameters):\n        pass\n"
        "    def eval(self, parameters, input_data, context):\n        raise ValueError('cannot judge')\n"))
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {"policyRuleURI": str(package)}}})
    status, body = server.request("GET", "/check_stability")
    assert status == 500
    assert body["success"] is False and body["is_stable"] is None and body["outcome"] == "error"
    assert "cannot judge" in body["message"] and body["message"].startswith(f"stability policy {package} failed")


def test_an_unknown_mgmt_action_is_400_and_the_policy_keeps_its_state(served):
    """Issue 13, case 6: an unknown action answered 500 and replaced the worker, so an
    `acknowledge` right after answered success and acknowledged nothing."""
    server, registry, _, _ = served
    event = HealthEvent(kind="xid", timestamp=time.time(), gpu_index=3, xid=79)
    registry.put(node_state("node-a", gpus=8, events=(event,)), kind="health", health=event)
    status, body = server.request("GET", "/check_stability")
    assert status == 200 and body["is_stable"] is False  # the policy has now seen XID 79 on gpu 3

    mgmt = {"block_id": "", "service": "stability_checker"}
    status, body = server.request("POST", "/mgmt", {**mgmt, "mgmt_action": "no-such-action"}, token=TOKEN)
    assert status == 400 and body == {"success": False, "message": body["message"]}
    assert "unknown management action 'no-such-action'" in body["message"]
    assert "Traceback" not in body["message"]

    status, body = server.request("POST", "/mgmt", {**mgmt, "mgmt_action": "acknowledge",
                                                    "mgmt_data": {"node_id": "node-a", "gpu": 3}}, token=TOKEN)
    assert status == 200
    assert [(a["node_id"], a["gpu"], a["xid"]) for a in body["data"]["acknowledged"]] == [("node-a", 3, 79)]
    status, body = server.request("GET", "/check_stability")
    assert body["is_stable"] is True


@pytest.mark.parametrize("query", ["before_id=99999999999999999999", "before_id=0", "before_id=-5", "limit=0",
                                   "limit=99999999999999999999"])
def test_out_of_range_verdict_queries_are_400(served, query):
    """Issue 13, case 6: `before_id=99999999999999999999` answered 500 (SQLite OverflowError)."""
    server = served[0]
    status, body = server.request("GET", f"/stability/verdicts?{query}")
    assert status == 400 and body["success"] is False and query.split("=")[0] in body["message"]


def test_concurrent_check_requests_share_one_evaluation(served, tmp_path):
    """Issue 13, case 3: 100 concurrent /check_stability each ran the policy; now they share one."""
    import threading

    server, _, clusters, _ = served
    package = write_directory(tmp_path / "slow", (
        "import os, time\n"
        "class AIOSv1PolicyRule:\n"
        "    def __init__(self, rule_id, settings, parameters):\n        self.calls = 0\n"
        "    def eval(self, parameters, input_data, context):\n"
        "        self.calls += 1\n"
        "        # the gate sits beside the code: the policy sandbox lets a policy read its own folder only\n"
        "        while not os.path.exists(os.path.join(os.path.dirname(__file__), 'gate')):\n"
        "            time.sleep(0.01)\n"
        "        return {'is_stable': True, 'stability_check_data': {'calls': self.calls}}\n"))
    gate = package / "code" / "gate"
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {"policyRuleURI": str(package)}}})
    before = len(server.request("GET", "/stability/verdicts?limit=10000")[1]["verdicts"])

    answers = []
    callers = [threading.Thread(target=lambda: answers.append(server.request("GET", "/check_stability")))
               for _ in range(20)]
    for caller in callers:
        caller.start()
    # every request is inside the server (one evaluating, held by the gate; the rest waiting on it)
    wait_for(lambda: len(server.active_requests()) == 20, timeout_s=30, what="20 requests in the server")
    gate.write_text("go")
    for caller in callers:
        caller.join(30)
    assert len(answers) == 20 and all(status == 200 for status, _ in answers)
    assert {body["id"] for _, body in answers} == {answers[0][1]["id"]}  # one verdict for all
    assert {body["stability_check_data"]["calls"] for _, body in answers} == {1}  # one evaluation
    verdict_rows = len(server.request("GET", "/stability/verdicts?limit=10000")[1]["verdicts"]) - before
    assert verdict_rows == 1


def test_mgmt_bodies_are_bounded_before_reading_and_deep_json_is_400(served):
    """Issue 13, cases 4 and 6: /mgmt read 50 MB before answering 400; 100k-deep JSON answered 500."""
    import http.client

    server = served[0]
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/mgmt")
    for name, value in (("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json"),
                        ("Content-Length", str(50 * 1024 * 1024))):
        connection.putheader(name, value)
    connection.endheaders()  # and no body at all: the answer must come from the header
    response = connection.getresponse()
    assert response.status == 413 and b"over 1048576 bytes" in response.read()
    connection.close()

    deep = b'{"service": "stability_checker", "mgmt_action": "x", "mgmt_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = server.request("POST", "/mgmt", token=TOKEN, raw=deep)
    assert status == 400 and "$.mgmt_data[0]" in body["message"] and "nested deeper than 64 levels" in body["message"]
