"""`aios-aggregator serve` as the Deployment runs it: one process, gRPC and HTTP, every part wired.

(a) configured only through the env the Deployment's ConfigMaps and container set, policies in
    the policy-runner sidecar: /healthz, an agent over the fake NVML, the nodes service, a
    stability verdict from the default policy, the pre-check map and its token, /metrics,
    the `nodes` CLI, and SIGTERM;
(b) Kubernetes (kmock): a Node deleted while watched leaves the registry, the SQLite store and
    the stored cluster document (after its remove_node pre-check); a node the first list does
    not show is kept.
"""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace

import kubernetes_validate
import pytest
import yaml

from aggregator.commands.onboard import main as onboard_main
from tests.fakenvml import FakeNvml
from tests.fakenvml.presets import a100_80gb
from tests.integration.parser_standin import ParserStandIn
from tests.integration.test_onboarding_end_to_end import stored_document
from tests.integration.test_policy_sidecar import TOKEN as SIDECAR_TOKEN
from tests.integration.test_policy_sidecar import _start_command as start_sidecar
from tests.integration.test_policy_sidecar import _stop as stop_sidecar
from tests.support.kube_api import kube_api  # noqa: F401 - fixture
from tests.support.net import free_port
from tests.support.onboarding_data import SAMPLE_CONFIG_TEXT
from tests.support.policy_packages import policy_source, write_directory
from tests.support.telemetry import ROOT, TOKEN, AgentProcess, AggregatorProcess, base_env, list_nodes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

READ_TOKEN = "read-only-token-for-the-network"


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, raw = answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


# ---------------------------------------------------------------- (a) the Deployment's configuration


@pytest.fixture
def sidecar(tmp_path):
    """The pod's policy-runner container (`aios-aggregator policy-sidecar`), local mode."""
    process, url = start_sidecar(tmp_path, {"POLICY_EXECUTION_MODE": "local", "POLICY_SYSTEM_EXECUTOR_ID": ""})
    try:
        yield url, tmp_path / "token"  # the token file the sidecar reads, shared as the pod's Secret
    finally:
        stop_sidecar(process)


def test_serve_configured_like_the_deployment(tmp_path, sidecar, fake_nvml_lib):
    sidecar_url, token_file = sidecar
    grpc_port, http_port, health_port = free_port(), free_port(), free_port()
    secret = tmp_path / "secret"  # the aios-token Secret: keys token and read-token
    secret.mkdir()
    (secret / "token").write_text(TOKEN + "\n")
    (secret / "read-token").write_text(READ_TOKEN + "\n")
    env = base_env(
        # aios-cluster + aios-aggregator-config ConfigMaps, then the container's own env
        AIOS_CLUSTER_ID="deploy-cluster",
        AIOS_GRPC_PORT=str(grpc_port),
        AIOS_HTTP_PORT=str(http_port),
        AIOS_HEALTH_PORT=str(health_port),
        AIOS_DB_PATH=str(tmp_path / "aggregator.db"),
        CLUSTER_STABILITY_CHECK_INTERVAL="60",
        AIOS_API_URL="",
        POLICY_DB_URL="",
        POLICY_EXECUTOR_HOST_URL="",
        AIOS_TOKEN_FILE=str(secret / "token"),
        AIOS_READ_TOKEN_FILE=str(secret / "read-token"),
        AIOS_POLICY_SIDECAR_URL=sidecar_url,
        AIOS_POLICY_SIDECAR_TOKEN_FILE=str(token_file),  # the runner's own, shared in the pod (an emptyDir)
    )
    del env["AIOS_TOKEN"]  # the Secret's files are the only tokens, as in the pod
    env.pop("KUBECONFIG", None)
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    agent = None
    try:
        health = wait_for(lambda: proc.poll() is None and http("GET", f"{base}/healthz"), what="/healthz",
                          timeout_s=30)
        assert proc.poll() is None, log_path.read_text()
        assert health == (200, {"status": "ok", "checks": {"grpc": True, "db": True, "http": True}})
        # the readinessProbe's own port answers the same
        assert http("GET", f"http://127.0.0.1:{health_port}/healthz") == health

        nvml = FakeNvml(fake_nvml_lib, tmp_path / "nvml.conf").configure(
            gpus=[replace(a100_80gb(0), util_gpu_pct=37, memory_used_mb=20480)])
        agent = AgentProcess(tmp_path, "node-a", f"127.0.0.1:{grpc_port}", env=nvml.env, token=TOKEN)

        def node_a_status():
            status, body = http("GET", f"{base}/nodes_status", token=READ_TOKEN)
            entries = [n for n in body["nodes_status"] if n["node_id"] == "node-a"] if status == 200 else []
            return entries[0] if entries and entries[0]["gpus"] and entries[0]["gpus"][0]["utilization"] is not None else None

        entry = wait_for(node_a_status, what="node-a in /nodes_status with a GPU reading")
        assert entry["status"] == "healthy"
        assert [(g["utilization"], g["memory"]["total"], g["memory"]["used"]) for g in entry["gpus"]] == [(37.0, 81920, 20480)]
        assert http("GET", f"{base}/healthy_nodes", token=READ_TOKEN) == (200, {"success": True, "nodes": ["node-a"]})

        status, verdict = http("GET", f"{base}/check_stability", token=READ_TOKEN)
        assert status == 200, verdict
        assert (verdict["success"], verdict["is_stable"], verdict["policy_uri"], verdict["nodes"]) == (
            True, True, "aios-default-stability", 1)
        # the default policy ran in the policy-runner container, not in the aggregator's
        _, sidecar_health = http("GET", f"{sidecar_url}/healthz")
        assert sidecar_health["data"]["open_policies"] >= 1

        policy_map = {"add_node": "gate:1.0-stable"}
        status, refused = http("POST", f"{base}/pre-check-policies/update", policy_map)
        assert status == 401 and refused["success"] is False
        # the runner's loopback token grants policy calls only, never the aggregator's endpoints
        assert http("POST", f"{base}/pre-check-policies/update", policy_map, token=SIDECAR_TOKEN)[0] == 401
        assert http("GET", f"{base}/pre-check-policies", token=SIDECAR_TOKEN)[0] == 401
        assert http("POST", f"{base}/pre-check-policies/update", policy_map, token=READ_TOKEN)[0] == 403
        assert http("GET", f"{base}/pre-check-policies", token=READ_TOKEN) == (200, {"success": True, "data": {}})
        assert http("POST", f"{base}/pre-check-policies/update", policy_map, token=TOKEN) == (
            200, {"success": True, "data": policy_map})
        assert http("GET", f"{base}/pre-check-policies", token=TOKEN) == (200, {"success": True, "data": policy_map})

        status, metrics = http("GET", f"{base}/metrics")  # open, like /healthz
        assert status == 200
        assert 'aios_cluster_nodes{cluster="deploy-cluster",status="healthy"} 1.0' in metrics.splitlines()
        assert 'aios_cluster_gpus{cluster="deploy-cluster"} 1.0' in metrics.splitlines()

        nodes_cli = subprocess.run(
            [sys.executable, "-m", "aggregator.cli", "nodes", "--aggregator", f"127.0.0.1:{grpc_port}"],
            cwd=ROOT, env={**env, "AIOS_TOKEN": READ_TOKEN}, capture_output=True, text=True, timeout=30)
        assert nodes_cli.returncode == 0, nodes_cli.stderr
        rows = [line.split() for line in nodes_cli.stdout.splitlines()]
        assert rows[0][0] == "NODE" and rows[1][:4] == ["node-a", "node-a-name", "healthy", "1"]

        agent.stop()
        agent = None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if agent is not None:
            agent.stop()
        stop_process(proc)
    log_text = log_path.read_text()
    assert "Kubernetes: off" in log_text and "Traceback" not in log_text, log_text


@pytest.mark.parametrize("name, value", [
    ("AIOS_GRPC_PORT", "seven"),
    ("CLUSTER_STABILITY_CHECK_INTERVAL", "soon"),
    ("POLICY_EXECUTION_MODE", "elsewhere"),
    ("AIOS_TOKEN_FILE", "/nonexistent/token"),
])
def test_a_bad_setting_stops_serve_naming_it(tmp_path, name, value):
    env = {**base_env(AIOS_DB_PATH=str(tmp_path / "a.db"), AIOS_GRPC_PORT="0", AIOS_HTTP_PORT="0"), name: value}
    env.pop("KUBECONFIG", None)
    done = subprocess.run([sys.executable, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert name in done.stderr.strip().splitlines()[-1] and value in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- (b) deleted Nodes

REFUSE_NODE_B = policy_source("""
    def __init__(self, rule_id, settings, parameters):
        pass

    def eval(self, parameters, input_data, context):
        return {"allowed": input_data["node_id"] != "node-b", "input_data": input_data}
""")


def stored_node_ids(db_path) -> set[str]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT node_id FROM telemetry_node_state")}


def document_ids(aggregator) -> set[str]:
    return {n["id"] for n in stored_document(aggregator.address, "cluster-eu-1")["nodes"]["nodeData"]}


def test_a_deleted_node_leaves_the_registry_the_store_and_the_document(tmp_path, kube_api):
    from kubernetes import client

    from aggregator.kube_client import load_kube_client

    parser = ParserStandIn()
    aggregator = AggregatorProcess(tmp_path, extra_args=(
        "--cluster-id", "cluster-eu-1", "--api-url", parser.url, "--kubeconfig", str(kube_api.kubeconfig),
        "--per-node-metrics"))
    core = client.CoreV1Api(load_kube_client(str(kube_api.kubeconfig)))
    agents: dict[str, AgentProcess] = {}
    try:
        # node-a's and node-b's Nodes exist; node-c's does not
        core.create_node({"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": "node-a-name", "labels": {"nodeID": "node-a"}}})
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b-name"}})
        aggregator.start(base_env(AIOS_AGENT_AUTH="token"))
        agents = {n: AgentProcess(tmp_path, n, aggregator.address, interval_s=0.2) for n in ("node-a", "node-b", "node-c")}
        wait_for(lambda: len(list_nodes(aggregator.address)) == 3, what="three agents known")
        config = tmp_path / "config.json"
        cluster = json.loads(SAMPLE_CONFIG_TEXT)
        del cluster["config"]["stabilityChecker"]  # its URI needs a policy DB: the default policy judges
        cluster["config"]["actionsPolicyMap"] = {"scale_block": "scale-gate:1.0-stable"}
        config.write_text(json.dumps(cluster))
        err = io.StringIO()
        assert onboard_main([str(config), "--onboard", "--api-url", parser.url, "--output", str(tmp_path),
                             "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes"],
                            out=io.StringIO(), err=err) == 0, err.getvalue()
        assert document_ids(aggregator) == {"node-a", "node-b", "node-c"}
        # the stored document's config.actionsPolicyMap seeds the pre-check map
        assert http("GET", f"{aggregator.http_url}/pre-check-policies", token=TOKEN) == (
            200, {"success": True, "data": {"scale_block": "scale-gate:1.0-stable"}})

        # restarted, the registry holds node-c (from its store) and Kubernetes lists no such Node: kept
        aggregator.stop()
        aggregator.start(base_env(AIOS_AGENT_AUTH="token"))
        wait_for(lambda: "node-c is in the registry but Kubernetes lists no such Node" in aggregator.log_text(),
                 what="the first list reporting node-c")
        assert set(list_nodes(aggregator.address)) == {"node-a", "node-b", "node-c"}

        _, metrics = http("GET", f"{aggregator.http_url}/metrics")
        assert any(line.startswith("aios_node_cpu_cores{") and 'node="node-c"' in line for line in metrics.splitlines())

        # the machines of node-a and node-b go away (their agents with them), then their Nodes
        agents.pop("node-a").stop()
        agents.pop("node-b").stop()
        test_calls = len(kube_api.requests())  # from here on, the test itself only deletes Nodes
        # remove_node refuses node-b: its Node goes, it stays in the document
        policy = write_directory(tmp_path / "remove-gate", REFUSE_NODE_B)
        status, _ = http("POST", f"{aggregator.http_url}/pre-check-policies/update", {"remove_node": str(policy)},
                         token=TOKEN)
        assert status == 200

        core.delete_node("node-a-name")  # by its nodeID label
        core.delete_node("node-b-name")  # by the agent's node name
        wait_for(lambda: set(list_nodes(aggregator.address)) == {"node-c"}, what="node-a and node-b removed")
        # the agent of node-c still streams: nothing removed it
        wait_for(lambda: stored_node_ids(aggregator.db) == {"node-c"}, what="the store forgetting both")
        wait_for(lambda: document_ids(aggregator) == {"node-b", "node-c"}, what="node-a leaving the stored document")
        assert stored_document(aggregator.address, "cluster-eu-1")["nodes"]["count"] == 2
        status, records = http("GET", f"{aggregator.http_url}/enrollment/records", token=TOKEN)
        outcomes = {(r["node_id"], r["action"], r["outcome"]) for r in records["records"]}
        assert {("node-a", "remove_node", "removed"), ("node-b", "remove_node", "refused")} <= outcomes

        # node-a and node-b went stale before their Nodes went: the verdict changed, an Event says so
        kube_api.wait_for(lambda: any(r.method.value == "POST" and "/events" in r.url.path for r in kube_api.requests()),
                          what="a stability Event")
        aggregator.proc.send_signal(signal.SIGTERM)
        assert aggregator.proc.wait(timeout=20) == 0, aggregator.log_text()
    finally:
        for process in agents.values():
            process.stop()
        aggregator.stop()
        parser.close()

    # the aggregator's calls are exactly what deploy/aggregator/aggregator-rbac.yaml grants
    used = set()
    for request in kube_api.requests():
        if request.method.value == "DELETE":
            continue  # the test's own
        parts = request.url.path.strip("/").split("/")  # api v1 [namespaces NS] resource [name]
        namespace, resource = (parts[3], parts[4]) if parts[2] == "namespaces" else (None, parts[2])
        verb = {"POST": "create"}.get(request.method.value) or ("watch" if request.url.query.get("watch") else "list")
        used.add((verb, resource, namespace))
    assert test_calls >= 2
    # patch nodes is the quarantine's, which in its default mode (dry-run) writes nothing; agents
    # authenticate with the shared token here (node-c has no Node): tests/integration/
    # test_agent_identity.py checks the TokenReview, node and pod reads of Kubernetes agent auth;
    # the token Secret's two calls are made only while no token is mounted (test_token_secret.py)
    assert used - {("create", "nodes", None)} == {
        ("list", "nodes", None), ("watch", "nodes", None), ("create", "events", "controllers")}
    assert granted_rbac() == used - {("create", "nodes", None)} | {
        ("get", "nodes", None), ("create", "tokenreviews", None), ("get", "pods", "controllers"), ("patch", "nodes", None),
        ("get", "secrets", "controllers"), ("create", "secrets", "controllers")}


RBAC = ROOT / "deploy" / "aggregator" / "aggregator-rbac.yaml"


def granted_rbac() -> set[tuple[str, str, str | None]]:
    """(verb, resource, namespace or None for cluster-wide) the manifest grants the aggregator's account."""
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    granted = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if {"name": account["name"], "namespace": account["namespace"], "kind": "ServiceAccount"} not in binding["subjects"]:
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        granted |= {(verb, res, namespace) for rule in role["rules"] for verb in rule["verbs"] for res in rule["resources"]}
    return granted


def test_aggregator_rbac_manifest_is_valid_kubernetes():
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                         "Role", "RoleBinding"]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
