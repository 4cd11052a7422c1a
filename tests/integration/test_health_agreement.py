"""The four consumers of the GPU health rule agree on the same GPUs.

One real aggregator (serve's wiring, in this process: gRPC ingest, NodeRegistry,
SQLite, the stability checker with the default policy in a real policy worker,
the HTTP app) receives, over loopback gRPC, one node per case: a GPU with an XID
of each resolution bucket, a lost GPU, a GPU missing from the sample,
uncorrectable ECC errors and a row-remap failure. Then the registry's view
(`/healthy_nodes`, and each node's status in the metrics), the metrics
exposition (`/metrics`: unhealthy GPUs by problem class), `nodes_data`
(`/nodes_status`) and the default policy's verdict (`/check_stability`) must
all say the same about every node. The expectations are literal (read from
NVIDIA's catalog), not computed by the code under test.
"""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import pytest

from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import MIB, GpuInventory, GpuSample, HealthEvent, NodeInventory, NodeSample
from tests.metrics_fixtures.exposition import parse_exposition, value
from tests.support.telemetry import TOKEN, AggregatorThread
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER = "agreement"

# node -> (what its GPU 0 shows, healthy?, the policy's reason, the metrics' problem class, the XID finding's resolution)
CASES = {
    "xid-ignore": ("XID 43 (IGNORE)", True, None, None, None),
    "xid-restart-app": ("XID 13 (RESTART_APP)", True, None, None, None),
    "xid-reset-gpu": ("XID 48 (WORKFLOW_XID_48: reset)", False, "xid", "xid_critical", "reset_gpu"),
    "xid-reboot-node": ("XID 79 (RESTART_BM)", False, "xid", "xid_critical", "reboot_node"),
    "xid-contact-support": ("XID 142 (CONTACT_SUPPORT)", False, "xid", "xid_critical", "contact_support"),
    "gpu-lost": ("lost in the sample", False, "gpu_lost", "lost", None),
    "gpu-missing": ("GPU 1 missing from the sample", False, "gpu_lost", "lost", None),
    "ecc": ("2 volatile uncorrectable ECC errors", False, "ecc_uncorrectable", "memory_errors", None),
    "row-remap": ("row-remap failure", False, "row_remap_failure", "memory_errors", None),
}
XIDS = {"xid-ignore": 43, "xid-restart-app": 13, "xid-reset-gpu": 48, "xid-reboot-node": 79, "xid-contact-support": 142}


def _inventory(node_id: str, gpus: int) -> NodeInventory:
    return NodeInventory(
        node_id=node_id, node_name=node_id, host=None,
        gpus=tuple(GpuInventory(i, f"GPU-{node_id}-{i}", "NVIDIA A100-SXM4-80GB", 81920 * MIB) for i in range(gpus)),
    )


def _messages(node_id: str, now: float) -> list[bytes]:
    gpus = 2 if node_id == "gpu-missing" else 1
    gpu0 = {"index": 0, "uuid": f"GPU-{node_id}-0"}
    if node_id == "gpu-lost":
        gpu0.update(lost=True, error="NVML_ERROR_GPU_IS_LOST")
    elif node_id == "ecc":
        gpu0.update(ecc_uncorrected_volatile=2)
    elif node_id == "row-remap":
        gpu0.update(remapped_rows_failure=True)
    sample = NodeSample(timestamp=now, host=None, gpus=(GpuSample(**gpu0),))
    hello = pb.Hello(node_id=node_id, cluster_id=CLUSTER, agent_version="test", agent_instance="i1",
                     inventory=convert.inventory_to_pb(_inventory(node_id, gpus)), interval_s=3600)
    messages = [pb.AgentMessage(seq=0, hello=hello), pb.AgentMessage(seq=1, sample=convert.sample_to_pb(sample))]
    if node_id in XIDS:
        event = HealthEvent("xid", now, gpu_index=0, gpu_uuid=gpu0["uuid"], xid=XIDS[node_id])
        messages.append(pb.AgentMessage(seq=2, health=convert.health_to_pb(event)))
    return [m.SerializeToString() for m in messages]


def _send(address: str, messages: list[bytes]) -> None:
    with grpc.insecure_channel(address) as channel:
        stream = channel.stream_stream("/aios.telemetry.v1.TelemetryIngest/Stream", request_serializer=lambda b: b,
                                       response_deserializer=pb.AggregatorMessage.FromString)
        replies = list(stream(iter(messages), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10))
    assert [r for r in replies if r.WhichOneof("body") == "refusal"] == []


def _get(base: str, path: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.read()


@pytest.fixture
def served(tmp_path):
    server = AggregatorThread(tmp_path, cluster_id=CLUSTER, http=True, env={
        "CLUSTER_STABILITY_CHECK_INTERVAL": "3600", "AIOS_POLICY_CACHE_DIR": str(tmp_path / "policy-cache"),
        "AIOS_POLICY_TIMEOUT_S": "20",
    })
    try:
        yield server
    finally:
        server.close()


def test_registry_metrics_nodes_data_and_default_policy_agree(served):
    now = time.time()
    for node_id in CASES:
        _send(served.address, _messages(node_id, now))
    registry = served.aggregator.registry
    wait_for(lambda: all((s := registry.get(n)) is not None and s.samples_received == 1
                         and len(s.health_events) == (n in XIDS) for n in CASES), what="every case ingested")

    expected_healthy = sorted(n for n, case in CASES.items() if case[1])
    assert expected_healthy == ["xid-ignore", "xid-restart-app"]

    # 1. the registry: /healthy_nodes, and each node's status
    healthy_nodes = json.loads(_get(served.http_url, "/healthy_nodes"))
    assert healthy_nodes == {"success": True, "nodes": expected_healthy}
    assert {n: registry.get(n).status for n in CASES} == {n: "healthy" if c[1] else "unhealthy" for n, c in CASES.items()}

    # 2. the metrics exposition
    metrics = parse_exposition(_get(served.http_url, "/metrics").decode())
    for node_id, case in CASES.items():
        status = "healthy" if case[1] else "unhealthy"
        assert value(metrics, "aios_cluster_node_status", cluster=CLUSTER, node=node_id, status=status) == 1, node_id
    assert value(metrics, "aios_cluster_gpus_unhealthy", cluster=CLUSTER) == 7
    assert value(metrics, "aios_cluster_gpus_lost", cluster=CLUSTER) == 2
    by_kind = {kind: value(metrics, "aios_cluster_gpu_problems", cluster=CLUSTER, kind=kind)
               for kind in ("xid_critical", "lost", "memory_errors", "unresponsive", "thermal_throttling")}
    assert by_kind == {"xid_critical": 3, "lost": 2, "memory_errors": 2, "unresponsive": 0, "thermal_throttling": 0}

    # 3. nodes_data (what the policy reads)
    nodes_status = json.loads(_get(served.http_url, "/nodes_status"))["nodes_status"]
    entries = {e["node_id"]: e for e in nodes_status}
    assert {n: entries[n]["state"] for n in CASES} == {n: "healthy" if c[1] else "unhealthy" for n, c in CASES.items()}
    assert {n: [g["lost"] for g in entries[n]["gpus"]] for n in ("gpu-lost", "gpu-missing", "ecc")} == {
        "gpu-lost": [True], "gpu-missing": [False, True], "ecc": [False]}
    assert entries["gpu-missing"]["gpus"][1]["lost_reason"] == "in the inventory but missing from the latest sample"

    # 4. the default policy's verdict
    verdict = json.loads(_get(served.http_url, "/check_stability"))
    assert verdict["is_stable"] is False
    reasons = verdict["stability_check_data"]["reasons"]
    assert sorted(verdict["stability_check_data"]["unstable_nodes"]) == sorted(n for n, c in CASES.items() if not c[1])
    assert {r["node_id"]: r["reason"] for r in reasons} == {n: c[2] for n, c in CASES.items() if c[2]}
    assert {r["node_id"]: r["resolution"] for r in reasons if r["reason"] == "xid"} == {
        n: c[4] for n, c in CASES.items() if c[4]}
