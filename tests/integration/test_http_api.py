"""The aggregator's HTTP API served by uvicorn on loopback: the operators' guide replayed, tokens, errors."""

import functools
import json
import urllib.error
import urllib.request

import pytest
from fastapi import APIRouter

from aggregator.auth import AccessTokens
from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig, open_policy
from aggregator.web.app import create_app
from aggregator.web.serving import start_http_in_thread
from tests.support.policy_packages import StandIn, policy_source, write_package

pytestmark = pytest.mark.integration

TOKEN = "t0k-for-tests"
READ_TOKEN = "read-t0k-for-tests"
ADD_NODE = "aiosv1.policies.cluster-controller-gateway.add-node:v0.0.12-stable"
REMOVE_NODE = "aiosv1.policies.cluster-controller-gateway.remove-node:v0.0.1-stable"
ADD_CLUSTER = "aiosv1.policies.cluster-controller-gateway.add-cluster:v0.0.2-stable"
UPDATE_GUARD = "aiosv1.policies.update-guard:v1.0-stable"
BROKEN = "aiosv1.policies.broken:v0.1-stable"
ADD_NODE_V2 = "aiosv1.policies.cluster-controller-gateway.add-node:v0.0.13-stable"

POLICIES = {
    ADD_NODE: """
def __init__(self, rule_id, settings, parameters): self.version = parameters["version"]
def eval(self, parameters, input_data, context):
    return {"allowed": True, "input_data": dict(input_data, checked_by=self.version)}
""",
    ADD_NODE_V2: """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    return {"allowed": False, "input_data": "add-node v0.0.13: no new nodes this week"}
""",
    REMOVE_NODE: """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): return {"allowed": True, "input_data": input_data}
""",
    ADD_CLUSTER: """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): return {"allowed": True, "input_data": input_data}
""",
    UPDATE_GUARD: """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    assert set(input_data) == {"cluster_data"}, input_data
    cluster = input_data["cluster_data"]
    if "forbidden" in cluster.get("tags", []):
        return {"allowed": False, "input_data": "tag 'forbidden' is not allowed on this cluster"}
    cluster["clusterMetadata"]["reviewedBy"] = "update-guard"
    return {"allowed": True, "input_data": {"cluster_data": cluster}}
""",
    BROKEN: """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): raise RuntimeError("guard crashed")
""",
}

CLUSTER = {
    "id": "cluster-123",
    "regionId": "eu-central-1",
    "config": {"policyExecutionMode": "local"},
    "nodes": {"count": 0, "nodeData": []},
    "clusterMetadata": {"name": "lab", "creator": "ops@example.com"},
    "tags": ["lab"],
}


@pytest.fixture
def policy_db(tmp_path):
    server = StandIn()
    for index, (uri, body) in enumerate(POLICIES.items()):
        package = write_package(("zip", "tar.gz", "tar.xz")[index % 3], tmp_path / f"p{index}", policy_source(body))
        path = f"/packages/{index}-{package.name}"
        server.file_route(path, package)
        server.json_route("GET", f"/policy/{uri}", {"success": True, "data": {
            "name": uri.split(":")[0], "version": uri.split(":")[1].split("-")[0], "release_tag": "stable",
            "code": server.url + path, "policy_settings": {}, "policy_parameters": {"version": uri.split(":")[1]}}})
    yield server
    server.close()


@pytest.fixture
def api(tmp_path, policy_db):
    db = Database(tmp_path / "aggregator.db")
    store = ClusterStore(db)
    store.put("cluster-123", CLUSTER)
    config = PolicyConfig(cache_dir=tmp_path / "cache", policy_db_url=policy_db.url, call_timeout_s=5)
    governance = Governance(db, functools.partial(open_policy, config=config))
    extra = APIRouter()
    extra.add_api_route("/extra", lambda: {"success": True, "data": "read"}, methods=["GET"])
    extra.add_api_route("/extra", lambda: {"success": True, "data": "written"}, methods=["POST"])

    def typed(count: int) -> dict:
        return {"success": True, "data": count}

    extra.add_api_route("/extra/typed", typed, methods=["GET"])
    server = start_http_in_thread(create_app(governance=governance, cluster_store=store,
                                             tokens=AccessTokens(write=(TOKEN,), read=(READ_TOKEN,)), routers=[extra]))

    class Api:
        def call(self, method, path, body=None, *, token=TOKEN, raw=None):
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data,
                                             method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read()), dict(response.headers)
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read()), dict(exc.headers)

    api = Api()
    api.store, api.governance = store, governance
    yield api
    server.stop()
    governance.close()
    db.close()


# the guide's request bodies, verbatim (cluster-user.md)
GUIDE_PRECHECK_UPDATE = b"""{
        "add_node": "aiosv1.policies.cluster-controller-gateway.add-node:v0.0.12-stable",
        "remove_node": "aiosv1.policies.cluster-controller-gateway.remove-node:v0.0.1-stable",
        "add_cluster": "aiosv1.policies.cluster-controller-gateway.add-cluster:v0.0.2-stable",
        "remove_block": "",
        "add_vdag_controller": ""
    }"""
GUIDE_CLUSTER_UPDATE = b"""{
           "clusterMetadata.creator": "[email protected]",
           "regionId": "us-west-2",
           "tags": ["ai-cluster", "llm", "datacenter-grade-1", ]
        }"""


def test_guide_precheck_policy_update_sets_removes_and_keeps(api):
    status, body, _ = api.call("POST", "/pre-check-policies/update", {
        "remove_block": "old.remove-block:v1-stable", "add_vdag_controller": "old.vdag:v1-stable",
        "update_cluster": UPDATE_GUARD})
    assert status == 200 and body["success"] is True

    status, body, _ = api.call("POST", "/pre-check-policies/update", raw=GUIDE_PRECHECK_UPDATE)
    assert status == 200
    expected = {"add_node": ADD_NODE, "remove_node": REMOVE_NODE, "add_cluster": ADD_CLUSTER,
                "update_cluster": UPDATE_GUARD}
    assert body == {"success": True, "data": expected}
    assert api.call("GET", "/pre-check-policies", token=READ_TOKEN)[:2] == (200, {"success": True, "data": expected})


def test_guide_cluster_update_applies_the_fields(api):
    status, body, _ = api.call("PATCH", "/clusters/update/cluster-123", raw=GUIDE_CLUSTER_UPDATE)
    assert status == 200, body
    expected = dict(CLUSTER, regionId="us-west-2", tags=["ai-cluster", "llm", "datacenter-grade-1"],
                    clusterMetadata={"name": "lab", "creator": "[email protected]"})
    assert body == {"success": True, "data": expected}
    assert api.store.get("cluster-123") == expected
    assert api.call("GET", "/clusters/read/cluster-123", token=READ_TOKEN)[:2] == (200, {"success": True, "data": expected})


def test_update_cluster_policy_refusal_leaves_the_document_unchanged(api):
    api.call("POST", "/pre-check-policies/update", {"update_cluster": UPDATE_GUARD})
    status, body, _ = api.call("PATCH", "/clusters/update/cluster-123",
                               {"tags": ["forbidden"], "regionId": "us-west-2"})
    assert status == 403
    assert body == {"success": False, "message":
                    "update_cluster pre-check refused the update: tag 'forbidden' is not allowed on this cluster"}
    assert api.store.get("cluster-123") == CLUSTER


def test_update_cluster_policy_may_change_what_is_stored(api):
    api.call("POST", "/pre-check-policies/update", {"update_cluster": UPDATE_GUARD})
    status, body, _ = api.call("PATCH", "/clusters/update/cluster-123", {"clusterMetadata.creator": "me@example.com"})
    assert status == 200, body
    expected = dict(CLUSTER, clusterMetadata={"name": "lab", "creator": "me@example.com", "reviewedBy": "update-guard"})
    assert api.store.get("cluster-123") == expected == body["data"]


def test_a_failing_update_policy_refuses_fail_closed(api):
    api.call("POST", "/pre-check-policies/update", {"update_cluster": BROKEN})
    status, body, _ = api.call("PATCH", "/clusters/update/cluster-123", {"regionId": "us-west-2"})
    assert status == 403
    assert "RuntimeError: guard crashed" in body["message"] and body["success"] is False
    assert api.store.get("cluster-123") == CLUSTER


def test_generic_precheck_runs_the_mapped_policy_and_reloads_when_the_uri_changes(api):
    status, body, _ = api.call("POST", "/pre-check/add_node", {"node_data": {"id": "n1"}})
    assert (status, body["data"]) == (200, {"allowed": True, "input_data": {"node_data": {"id": "n1"}}, "policy_uri": None})
    api.call("POST", "/pre-check-policies/update", raw=GUIDE_PRECHECK_UPDATE)
    status, body, _ = api.call("POST", "/pre-check/add_node", {"node_data": {"id": "n1"}, "cluster_data": {}})
    assert body["data"] == {"allowed": True, "policy_uri": ADD_NODE,
                            "input_data": {"node_data": {"id": "n1"}, "cluster_data": {}, "checked_by": "v0.0.12-stable"}}
    api.call("POST", "/pre-check-policies/update", {"add_node": ADD_NODE_V2})
    status, body, _ = api.call("POST", "/pre-check/add_node", {"node_data": {"id": "n1"}})
    assert body["data"] == {"allowed": False, "policy_uri": ADD_NODE_V2,
                            "input_data": "add-node v0.0.13: no new nodes this week"}
    status, body, _ = api.call("POST", "/pre-check/launch_rockets", {})
    assert status == 400 and "'launch_rockets'" in body["message"]


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/pre-check-policies/update", {"add_node": ""}),
        ("PATCH", "/clusters/update/cluster-123", {"regionId": "x"}),
        ("POST", "/pre-check/add_node", {}),
        ("POST", "/extra", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_writing_without_the_token_is_refused(api, method, path, body, token):
    status, answer, headers = api.call(method, path, body, token=token)
    assert status == 401
    assert answer["success"] is False and "token" in answer["message"]
    assert headers["www-authenticate"] == "Bearer"
    assert api.store.get("cluster-123") == CLUSTER
    assert api.governance.policy_map() == {}


def test_openapi_document_describes_the_bodies(api):
    status, document, _ = api.call("GET", "/openapi.json", token=None)  # open, like /healthz and /metrics
    assert status == 200
    patch = document["paths"]["/clusters/update/{cluster_id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}


@pytest.mark.parametrize("path", ["/pre-check-policies", "/clusters/read/cluster-123", "/extra"])
def test_reads_need_a_token_and_the_read_token_is_enough(api, path):
    for token in (None, "wrong-token"):
        status, answer, headers = api.call("GET", path, token=token)
        assert status == 401 and answer["success"] is False and headers["www-authenticate"] == "Bearer"
    assert api.call("GET", path, token=READ_TOKEN)[0] == 200
    assert api.call("GET", path, token=TOKEN)[0] == 200  # the write token also reads


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/pre-check-policies/update", {"add_node": ""}),
        ("PATCH", "/clusters/update/cluster-123", {"regionId": "x"}),
        ("POST", "/pre-check/add_node", {}),
        ("POST", "/extra", {}),
    ],
)
def test_the_read_token_on_a_write_is_forbidden(api, method, path, body):
    status, answer, _ = api.call(method, path, body, token=READ_TOKEN)
    assert status == 403
    assert "read-only token" in answer["message"]
    assert api.store.get("cluster-123") == CLUSTER
    assert api.governance.policy_map() == {}


def test_other_routers_are_served_under_the_same_rule(api):
    assert api.call("GET", "/extra", token=READ_TOKEN)[:2] == (200, {"success": True, "data": "read"})
    assert api.call("POST", "/extra", {})[:2] == (200, {"success": True, "data": "written"})


@pytest.mark.parametrize(
    "method, path, raw, status, message",
    [
        ("PATCH", "/clusters/update/cluster-123", b'{"regionId": "x" "tags": []}', 400,
         "invalid JSON body: Expecting ',' delimiter at line 1 column 18"),
        ("PATCH", "/clusters/update/nope", b'{"regionId": "x"}', 404, "cluster 'nope' is not known here"),
        ("PATCH", "/clusters/update/cluster-123", b'{"tags.first": "x"}', 400,
         "'tags.first': cannot set a field inside 'tags', which is a list, not an object"),
        ("PATCH", "/clusters/update/cluster-123", b'{"config": []}', 400,
         "the cluster document would be invalid: config: must be object, got list"),
        ("PATCH", "/clusters/update/cluster-123", b'{"id": "other"}', 400,
         "the cluster document would be invalid: id: cannot be changed (the cluster is 'cluster-123')"),
        ("PATCH", "/clusters/update/cluster-123", b'["regionId"]', 400, "must be a JSON object, not list"),
        ("POST", "/pre-check-policies/update", b'{"add_node": "x:1-a", "teleport": ""}', 400,
         "unknown pre-check action(s): 'teleport'"),
        ("POST", "/pre-check-policies/update", b'{"add_node": 5}', 400, "add_node: the value must be"),
        ("GET", "/clusters/read/nope", None, 404, "cluster 'nope' is not known here"),
        ("GET", "/extra/typed?count=many", None, 422, "invalid request: query.count: Input should be a valid integer"),
        ("GET", "/no/such/endpoint", None, 404, "no such endpoint: GET /no/such/endpoint"),
        ("DELETE", "/clusters/read/cluster-123", None, 405, "method DELETE is not allowed"),
    ],
)
def test_errors_answer_success_false_with_a_clear_message(api, method, path, raw, status, message):
    got_status, body, _ = api.call(method, path, raw=raw)
    assert got_status == status
    assert body["success"] is False and message in body["message"], body
    assert api.store.get("cluster-123") == CLUSTER
