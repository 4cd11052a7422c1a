"""`aios-aggregator onboard` end to end: a config file, an aggregator (gRPC on loopback),
the Kubernetes API (kmock), and the parser stand-in checking what it receives."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from aggregator.commands.onboard import main
from proto.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from tests.integration.aggregator_standin import TOKEN, AggregatorStandIn
from tests.integration.parser_standin import ParserStandIn
from tests.support.kube_api import NODES, kube_api  # noqa: F401 - fixture
from tests.support.net import free_port
from tests.support.onboarding_data import (
    ENTRY_A,
    ENTRY_B,
    ENTRY_C,
    SAMPLE_CONFIG_TEXT,
    TOTALS_ABC,
    cpu_node_a,
    expected_document,
    gpu_node_b,
    gpu_node_c,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def parser():
    standin = ParserStandIn()
    yield standin
    standin.close()


@pytest.fixture
def aggregator(tmp_path):
    standin = AggregatorStandIn(tmp_path / "aggregator.db", [gpu_node_c(), cpu_node_a(), gpu_node_b()])
    yield standin
    standin.close()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(SAMPLE_CONFIG_TEXT)
    return path


def onboard(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def stored_document(address, cluster_id):
    with grpc.insecure_channel(address) as channel:
        answer = cluster_pb2_grpc.ClusterDocumentsStub(channel).GetClusterDocument(
            cluster_pb2.GetClusterDocumentRequest(cluster_id=cluster_id), timeout=5)
    return json.loads(answer.document_json)


def test_three_agents_onboarded_posted_wrapped_and_stored(tmp_path, config_file, parser, aggregator):
    code, out, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path / "out",
                             "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes")
    assert code == 0, err
    expected = expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    written = json.loads((tmp_path / "out" / "cluster-eu-1_populated.json").read_text())
    assert written == expected
    assert parser.problems == []
    assert parser.bodies("/api/createCluster") == [
        {"header": {"templateUri": "Parser/V1", "parameters": {}}, "body": {"spec": {"values": expected}}}
    ]
    assert out.strip() == '{"success": true, "task_id": "task-1", "result": {"path": "/api/createCluster"}}'
    assert "warning: node node-c: network.txBandwidth/rxBandwidth: link speed unknown for eno1" in err
    assert "warning: node node-a: gpus: not read (NVML: library not found)" in err
    assert stored_document(aggregator.address, "cluster-eu-1") == expected


def test_without_onboard_only_the_file_is_written(tmp_path, config_file, parser, aggregator):
    code, out, err = onboard(config_file, "--output", tmp_path, "--aggregator", aggregator.address,
                             "--token", TOKEN, "--no-kubernetes")
    assert code == 0, err
    assert json.loads((tmp_path / "cluster-eu-1_populated.json").read_text())["nodes"]["count"] == 3
    assert parser.requests == []
    assert aggregator.store.ids() == []


def test_a_refusal_is_shown_verbatim_and_exits_non_zero(tmp_path, config_file, parser, aggregator):
    parser.mode = "refuse"
    code, out, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                             "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes")
    assert code == 1
    refusal = "add_cluster pre-check: region eu-west-9 is closed to new clusters"
    assert f"the parser refused the cluster (HTTP 400):\n{refusal}\n" in err
    assert aggregator.store.ids() == []  # not onboarded: nothing to enroll into
    assert parser.problems == []


def test_a_parser_failure_exits_non_zero(tmp_path, config_file, parser, aggregator):
    parser.mode = "fail"
    code, out, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                             "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes")
    assert code == 1
    assert "the parser failed: HTTP 500: database is locked" in err
    assert aggregator.store.ids() == []


BAD_CONFIGS = {
    "nodes not an object": (
        lambda d: d.update(nodes=[]), ["  nodes: expected an object, got an array"]),
    "clusterMetadata missing": (
        lambda d: d.pop("clusterMetadata"), ["  clusterMetadata: missing"]),
    "stability checker URI": (
        lambda d: d["config"]["stabilityChecker"].update(policyRuleURI=["x"]),
        ["  config.stabilityChecker.policyRuleURI: expected a string, got an array"]),
    "several at once": (
        lambda d: (d.pop("id"), d.update(regionId=5), d["config"].update(policyExecutionMode="fast")),
        ["  id: missing", "  regionId: expected a string, got a number",
         "  config.policyExecutionMode: expected one of local, remote, got 'fast'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_are_reported_by_path_and_nothing_is_posted(tmp_path, parser, aggregator, case):
    change, expected_lines = BAD_CONFIGS[case]
    document = json.loads(SAMPLE_CONFIG_TEXT)
    change(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    code, out, err = onboard(path, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                             "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes")
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"{path}: {len(expected_lines)} problem(s); nothing was posted:"
    assert lines[1:] == expected_lines
    assert parser.requests == []
    assert not list(tmp_path.glob("*_populated.json"))


def test_invalid_json_is_reported_with_line_and_column(tmp_path, parser):
    path = tmp_path / "cluster.json"
    path.write_text('{"id": "c1",\n "regionId": }')
    code, out, err = onboard(path, "--onboard", "--api-url", parser.url, "--no-kubernetes")
    assert code == 2
    assert f"  {path}: invalid JSON at line 2, column 14: Expecting value" in err.splitlines()
    assert parser.requests == []


def test_onboard_without_api_url_posts_nothing(tmp_path, config_file, aggregator):
    code, out, err = onboard(config_file, "--onboard", "--aggregator", aggregator.address, "--no-kubernetes")
    assert code == 2
    assert "--onboard needs --api-url" in err


def kube_node(name, *, labels=None, gpus=None, cpu="8", memory="32Gi", storage="100Gi"):
    annotations = {} if gpus is None else {"gpu.aios/info": json.dumps(gpus)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations},
        "status": {"capacity": {"cpu": cpu, "memory": memory, "ephemeral-storage": storage, "pods": "110"}},
    }


def test_fallback_to_kubernetes_when_no_aggregator_answers(tmp_path, config_file, parser, kube_api):
    kube_api.emulator.objects[NODES, None, "worker-a"] = kube_node(
        "worker-a", labels={"nodeID": "node-a"}, gpus=[], cpu="16", memory="65848320Ki", storage="467875Mi")
    kube_api.emulator.objects[NODES, None, "worker-x"] = kube_node(
        "worker-x", gpus=[{"modelName": "Tesla T4", "memory": 15360}], cpu="4", memory="16Gi", storage="50Gi")
    code, out, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                             "--aggregator", f"127.0.0.1:{free_port()}", "--timeout", "2",
                             "--kubeconfig", kube_api.kubeconfig)
    assert code == 0, err
    document = json.loads((tmp_path / "cluster-eu-1_populated.json").read_text())
    assert document["nodes"]["nodeData"] == [
        {"id": "node-a",
         "gpus": {"count": 0, "memory": 0, "gpus": [], "features": [], "modelNames": []},
         "vcpus": {"count": 16}, "memory": 64305, "swap": 0,
         "storage": {"disks": 0, "size": 467875},
         "network": {"interfaces": 0, "txBandwidth": 0, "rxBandwidth": 0}},
        {"id": "worker-x",
         "gpus": {"count": 1, "memory": 15360, "gpus": [{"modelName": "Tesla T4", "memory": 15360}],
                  "features": [], "modelNames": ["Tesla T4"]},
         "vcpus": {"count": 4}, "memory": 16384, "swap": 0,
         "storage": {"disks": 0, "size": 51200},
         "network": {"interfaces": 0, "txBandwidth": 0, "rxBandwidth": 0}},
    ]
    assert document["vcpus"] == {"count": 20} and document["memory"] == 80689
    assert parser.problems == []
    assert "falling back to the Kubernetes API" in err
    assert ("warning: node worker-x (Node worker-x): no agent data, read from Kubernetes; "
            "gpus.features: not measured (the annotation carries no features); swap: not measured (no agent); "
            "storage.disks: not measured (no agent); storage.size is the kubelet's ephemeral-storage capacity; "
            "network: not measured (no agent)") in err
    assert ("warning: Nodes without the nodeID label (an onboarding prerequisite; their Node name is used as id): "
            "worker-x") in err
    assert "2 nodes (0 measured by agents, 2 from Kubernetes only)" in err


def test_agents_first_and_kubernetes_for_nodes_without_an_agent(tmp_path, config_file, aggregator, kube_api):
    for name, node_id in (("worker-a", "node-a"), ("worker-b", "node-b"), ("worker-c", "node-c")):
        kube_api.emulator.objects[NODES, None, name] = kube_node(name, labels={"nodeID": node_id}, cpu="1")
    kube_api.emulator.objects[NODES, None, "worker-e"] = kube_node("worker-e", gpus=[], cpu="2", memory="4Gi",
                                                                   storage="10Gi")
    code, out, err = onboard(config_file, "--output", tmp_path, "--aggregator", aggregator.address,
                             "--token", TOKEN, "--kubeconfig", kube_api.kubeconfig)
    assert code == 0, err
    document = json.loads((tmp_path / "cluster-eu-1_populated.json").read_text())
    entries = document["nodes"]["nodeData"]
    assert [e["id"] for e in entries] == ["node-a", "node-b", "node-c", "worker-e"]
    assert entries[:3] == [ENTRY_A, ENTRY_B, ENTRY_C]  # the agents' numbers win over capacity
    assert entries[3]["vcpus"] == {"count": 2} and entries[3]["memory"] == 4096
    assert document["vcpus"] == {"count": 274}
    assert "warning: node worker-e (Node worker-e): no agent data, read from Kubernetes" in err
    assert "Nodes without the nodeID label (an onboarding prerequisite; their Node name is used as id): worker-e" in err


def test_no_source_of_nodes_at_all(tmp_path, config_file, parser):
    code, out, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                             "--aggregator", f"127.0.0.1:{free_port()}", "--timeout", "2",
                             "--kubeconfig", tmp_path / "missing-kubeconfig")
    assert code == 3
    assert "error: no node data:" in err and "nothing was posted" in err
    assert parser.requests == []


def test_console_entry_exit_code_on_refusal(tmp_path, config_file, parser, aggregator):
    parser.mode = "refuse"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIOS_TOKEN": TOKEN, "AIOS_API_URL": parser.url}
    result = subprocess.run(
        [sys.executable, "-m", "aggregator.cli", "onboard", str(config_file), "--onboard", "--output", str(tmp_path),
         "--aggregator", aggregator.address, "--no-kubernetes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == "add_cluster pre-check: region eu-west-9 is closed to new clusters"
    assert "Traceback" not in result.stderr
