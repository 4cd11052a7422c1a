"""The token Secret nobody types: the aggregator creates `aios-token` on its first start (kmock as
the API server, the official client), agents wait for the mounted file and then stream, a restart
reads the Secret it made, and the calls are exactly what deploy/aggregator/aggregator-rbac.yaml grants."""

from __future__ import annotations

import base64

import pytest
import yaml
from kmock import resource

from aggregator.token_secret import TokenSecretError, ensure_token_secret
from tests.support.kube_api import forbidden, kube_api  # noqa: F401 - fixture
from tests.support.telemetry import ROOT, AgentProcess, AggregatorProcess, base_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SECRETS = resource("v1/secrets")
NAMESPACE, NAME = "controllers", "aios-token"


def core_v1(kube_api):
    from kubernetes import client

    from aggregator.kube_client import load_kube_client

    return client.CoreV1Api(load_kube_client(str(kube_api.kubeconfig)))


def stored_secret(kube_api) -> dict | None:
    key = (SECRETS, NAMESPACE, NAME)
    if key not in kube_api.emulator.objects or kube_api.emulator.objects[key].deleted:
        return None
    return kube_api.emulator.objects[key].raw


def keys(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def put_secret(kube_api, data: dict[str, str]) -> None:
    kube_api.emulator.objects[SECRETS, NAMESPACE, NAME] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_created_with_a_write_and_a_read_token_when_missing_and_read_back_after(kube_api):
    api = core_v1(kube_api)
    made = iter(["write-1", "read-1", "never-used", "never-used"])
    first = ensure_token_secret(api, NAMESPACE, NAME, token_factory=lambda: next(made))
    assert (first.tokens, first.read_tokens, first.created) == (("write-1",), ("read-1",), True)
    secret = stored_secret(kube_api)
    assert keys(secret) == {"token": "write-1\n", "read-token": "read-1\n"}
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "aios-aggregator"
    again = ensure_token_secret(api, NAMESPACE, NAME, token_factory=lambda: next(made))
    assert (again.tokens, again.read_tokens, again.created) == (("write-1",), ("read-1",), False)
    assert [(r.method.value, r.url.path) for r in kube_api.requests()] == [
        ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}"),
        ("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets"),
        ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}"),
    ]


def test_generated_tokens_are_long_random_and_distinct(kube_api):
    made = ensure_token_secret(core_v1(kube_api), NAMESPACE, NAME)
    assert len(made.tokens[0]) >= 40 and len(made.read_tokens[0]) >= 40
    assert made.tokens[0] != made.read_tokens[0]


def test_an_operators_secret_is_used_as_it_is_rotation_lines_included(kube_api):
    put_secret(kube_api, {"token": "new\nold\n"})  # mid-rotation, and no read-token key (made by hand)
    found = ensure_token_secret(core_v1(kube_api), NAMESPACE, NAME)
    assert (found.tokens, found.read_tokens, found.created) == (("new", "old"), (), False)
    assert kube_api.requests("POST") == []


@pytest.mark.parametrize(("data", "problem"), [
    ({"read-token": "r\n"}, "Secret controllers/aios-token has no key 'token'"),
    ({"token": "\n \n"}, "Secret controllers/aios-token: key 'token' is empty"),
    ({"token": "x" * 5000}, "key 'token' line 1 is over 4096 characters"),
    ({"token": "\n".join(f"t{i}" for i in range(20))}, "key 'token' holds 20 lines, more than 16 tokens"),
])
def test_a_secret_without_a_usable_token_is_refused_naming_the_key(kube_api, data, problem):
    put_secret(kube_api, data)
    with pytest.raises(TokenSecretError, match=problem):
        ensure_token_secret(core_v1(kube_api), NAMESPACE, NAME)


def test_a_missing_permission_names_what_to_grant(kube_api):
    kube_api.emulator.refusals["GET"] = forbidden("get", resource="secrets", name=NAME)
    with pytest.raises(TokenSecretError, match=r"forbidden to read Secret controllers/aios-token: grant .*'get' on "
                                               r"secrets named 'aios-token' and 'create' on secrets"):
        ensure_token_secret(core_v1(kube_api), NAMESPACE, NAME)


def test_an_unreachable_api_server_is_said_so(kube_api):
    api = core_v1(kube_api)
    kube_api.go_down()
    with pytest.raises(TokenSecretError, match="cannot read Secret controllers/aios-token: the API server is unreachable"):
        ensure_token_secret(api, NAMESPACE, NAME, request_timeout_s=2)


# ---------------------------------------------------------------- the whole first start


def granted_secret_calls() -> set[tuple[str, str | None]]:
    """(verb, resourceName or None) the aggregator's Roles grant on secrets."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "aggregator" / "aggregator-rbac.yaml").read_text()))
    return {(verb, name) for d in docs if d["kind"] == "Role" for rule in d["rules"] if "secrets" in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames") or [None]}


def test_first_start_creates_the_secret_agents_wait_for_it_and_a_restart_reads_it(tmp_path, kube_api):
    mount = tmp_path / "secret-volume"  # the optional Secret volume: empty until the kubelet fills it
    mount.mkdir()
    env = base_env(AIOS_TOKEN_FILE=str(mount / "token"), AIOS_READ_TOKEN_FILE=str(mount / "read-token"),
                   AIOS_TOKEN_SECRET=NAME, AIOS_NAMESPACE=NAMESPACE,
                   AIOS_AGENT_AUTH="token")  # agents with the shared token: the Secret is all they have
    del env["AIOS_TOKEN"]  # as in the pod: only the Secret's files
    aggregator = AggregatorProcess(tmp_path, extra_args=("--kubeconfig", str(kube_api.kubeconfig)))
    agent = None
    try:
        aggregator.start(env=env)
        token, read_token = (keys(stored_secret(kube_api))[k].strip() for k in ("token", "read-token"))
        agent_env = {"AIOS_TOKEN": "", "AIOS_TOKEN_FILE": str(mount / "token")}
        agent = AgentProcess(tmp_path, "node-t", aggregator.address, env=agent_env)
        waiting = f"AIOS_TOKEN_FILE={mount / 'token'}: cannot read: No such file or directory; retrying in"
        wait_for(lambda: waiting in agent.log_path.read_text(), what="the agent saying what it waits for")
        assert agent.proc.poll() is None  # waiting, not crash-looping
        for name, value in keys(stored_secret(kube_api)).items():  # what the kubelet does a minute later
            (mount / name).write_text(value)
        wait_for(lambda: "node-t" in list_nodes_with(aggregator.address, token), timeout_s=60,
                 what="the agent streaming with the Secret's token")
        assert "node-t" in list_nodes_with(aggregator.address, read_token)  # the read token reads

        # a restart before the volume is filled (or with it filled) keeps the same token: no second create
        aggregator.stop()
        for name in ("token", "read-token"):
            (mount / name).unlink()
        aggregator.start(env=env)
        assert "node-t" in list_nodes_with(aggregator.address, token)
        assert "node-t" in list_nodes_with(aggregator.address, read_token)
    finally:
        if agent is not None:
            agent.stop()
        aggregator.stop()
    assert "created Secret controllers/aios-token" in aggregator.log_text()
    calls = [(r.method.value, r.url.path) for r in kube_api.requests() if "/secrets" in r.url.path]
    assert calls == [("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}"),
                     ("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets"),
                     ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}")]
    # each is granted: get by that name, create in the namespace
    assert granted_secret_calls() == {("get", NAME), ("create", None)}


def list_nodes_with(address: str, token: str) -> set[str]:
    import grpc

    from proto.telemetry.v1 import telemetry_pb2 as pb
    from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = pb_grpc.TelemetryQueryStub(channel).ListNodes(
                pb.ListNodesRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5)
        except grpc.RpcError:
            return set()
    return {n.node_id for n in reply.nodes}


def test_without_kubernetes_a_missing_token_file_stops_the_start_saying_why(tmp_path):
    env = base_env(AIOS_TOKEN_FILE=str(tmp_path / "missing"), AIOS_TOKEN_SECRET=NAME)
    del env["AIOS_TOKEN"]
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    aggregator = AggregatorProcess(tmp_path)
    with pytest.raises(AssertionError, match="aggregator exited"):
        aggregator.start(env=env)
    aggregator.stop()
    log = aggregator.log_text()
    assert "without a Kubernetes API the Secret controllers/aios-token (AIOS_TOKEN_SECRET) cannot be read or created" in log
    assert "Traceback" not in log


