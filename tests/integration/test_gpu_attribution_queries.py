"""Who is on the GPU, on the aggregator's side: a sample with attribution streamed by the agent's stream client
to the whole aggregator (in this process, real gRPC and HTTP on loopback), then read back through the gRPC node
query, the new "which GPUs does pod P use" / "which pods use GPU G" queries, the CLI, and /nodes_status."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import grpc
import pytest

from agent.stream.client import StreamConfig, TelemetryStream
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from tests.metrics_fixtures.readings import ATTRIBUTED_INVENTORY, ATTRIBUTED_SAMPLE, GIB
from tests.support.telemetry import ROOT, TOKEN, AggregatorThread, base_env, query_stub
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = AggregatorThread(tmp_path_factory.mktemp("agg"), http=True, env={"CLUSTER_STABILITY_CHECK_INTERVAL": "3600"})
    config = StreamConfig(address=server.address, node_id="node-d", cluster_id="test-cluster", agent_version="test",
                          token=TOKEN, interval_s=60.0)  # fmt: skip
    stream = TelemetryStream(config, ATTRIBUTED_INVENTORY)
    stream.start()
    stream.send_sample(ATTRIBUTED_SAMPLE)
    assert stream.wait_acked(stream.stats().last_seq, 10)
    yield server
    stream.stop()
    server.close()


def _call(server, method: str, request, token: str = TOKEN):
    channel, stub, _ = query_stub(server.address)
    try:
        return getattr(stub, method)(request, metadata=(("authorization", f"Bearer {token}"),), timeout=5)
    finally:
        channel.close()


def _uses(response) -> list[tuple]:
    return [
        (u.node_id, u.gpu_index, u.mig_uuid, u.namespace, u.pod, u.container, u.allocated, tuple(u.pids),
         u.used_memory_bytes if u.HasField("used_memory_bytes") else None, u.resource, u.pod_uid)
        for u in response.uses
    ]  # fmt: skip


def test_the_node_query_carries_the_attribution_as_sent(served):
    detail = _call(served, "GetNode", pb.GetNodeRequest(node_id="worker-4"))
    assert convert.sample_from_pb(detail.latest_sample).attribution == ATTRIBUTED_SAMPLE.attribution
    assert [len(g.processes) for g in detail.latest_sample.gpus] == [3, 2]


def test_which_gpus_a_pod_uses(served):
    assert _uses(_call(served, "GetPodGpus", pb.PodGpusRequest(namespace="ml", pod="train-0"))) == [
        ("node-d", 0, "", "ml", "train-0", "trainer", True, (4101, 4102), 22 * GIB, "nvidia.com/gpu", "uid-train"),
    ]
    # no namespace: that pod name in any
    assert _uses(_call(served, "GetPodGpus", pb.PodGpusRequest(pod="infer-1"))) == [
        ("node-d", 1, "MIG-2222", "serve", "infer-1", "server", True, (5301,), 4 * GIB, "nvidia.com/mig-1g.10gb", "uid-i1"),
    ]
    assert _uses(_call(served, "GetPodGpus", pb.PodGpusRequest(namespace="other", pod="train-0"))) == []


def test_which_pods_use_a_gpu(served):
    by_gpu = _uses(_call(served, "GetGpuPods", pb.GpuPodsRequest(gpu_uuid="GPU-eeee")))
    assert [(u[2], u[4]) for u in by_gpu] == [("MIG-1111", "infer-0"), ("MIG-2222", "infer-1")]
    by_mig = _uses(_call(served, "GetGpuPods", pb.GpuPodsRequest(gpu_uuid="MIG-2222")))
    assert [u[4] for u in by_mig] == ["infer-1"]
    by_index = _uses(_call(served, "GetGpuPods", pb.GpuPodsRequest(node_id="worker-4", gpu_index=0)))
    assert [u[4] for u in by_index] == ["train-0"]  # the host process on GPU 0 is not a pod


def test_bad_and_unknown_questions_and_no_token(served):
    with pytest.raises(grpc.RpcError) as err:
        _call(served, "GetGpuPods", pb.GpuPodsRequest(gpu_uuid="GPU-nowhere"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "GPU-nowhere" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        _call(served, "GetGpuPods", pb.GpuPodsRequest(node_id="worker-4"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        _call(served, "GetPodGpus", pb.PodGpusRequest(namespace="ml"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        _call(served, "GetPodGpus", pb.PodGpusRequest(pod="train-0"), token="wrong")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_cli_answers_both_questions(served):
    def cli(*args):
        env = base_env(AIOS_AGGREGATOR_ADDR=served.address)
        return subprocess.run([sys.executable, "-m", "aggregator.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    pods = cli("pod-gpus", "ml/train-0")
    assert pods.returncode == 0, pods.stderr
    header, row = pods.stdout.splitlines()
    assert header.split() == ["NODE", "GPU", "MIG", "NAMESPACE", "POD", "CONTAINER", "ALLOCATED", "PIDS", "GPU", "MEM", "(MB)"]
    assert row.split() == ["node-d", "0", "-", "ml", "train-0", "trainer", "yes", "4101,4102", "22528"]
    gpus = cli("gpu-pods", "worker-4", "1")
    assert gpus.returncode == 0, gpus.stderr
    assert [line.split()[4] for line in gpus.stdout.splitlines()[1:]] == ["infer-0", "infer-1"]
    detail = cli("node", "node-d")
    assert "pods ml/train-0/trainer; 3 process(es)" in detail.stdout


def test_nodes_status_says_allocated_and_in_use(served):
    def entry():
        request = urllib.request.Request(f"{served.http_url}/nodes_status", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.loads(answer.read())
        found = [n for n in body["nodes_status"] if n["node_id"] == "node-d"]
        return found[0] if found else None

    node = wait_for(entry, what="node-d in /nodes_status")
    assert node["gpu_attribution"] == {
        "available": True, "reason": "", "refreshed_at": 1_790_000_015.0, "age_s": node["gpu_attribution"]["age_s"],
        "pods": 12,
        "allocatable": {"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 1, "nvidia.com/mig-3g.40gb": 1},
        "gpus_allocated": 2, "gpus_in_use": 2, "gpus_allocated_idle": 0, "gpus_in_use_unallocated": 0,
    }  # fmt: skip
    gpu0, gpu1 = node["gpus"]
    assert (gpu0["allocated"], gpu0["in_use"], [p["pod"] for p in gpu0["pods"]]) == (True, True, ["train-0"])
    assert [(p["pid"], p["scope"], p["pod"], p["used_memory_mb"]) for p in gpu0["processes"]] == [
        (4101, "pod", "train-0", 20_480), (4102, "pod", "train-0", 2_048), (7001, "host", "", 300),
    ]  # fmt: skip
    assert [(m["profile"], m["memory"], [p["pod"] for p in m["pods"]]) for m in gpu1["migs"]] == [
        ("3g.40gb", {"total": 40_960, "used": 8_192, "usage_percent": 20.0}, ["infer-0"]),
        ("1g.10gb", {"total": 10_240, "used": 4_096, "usage_percent": 40.0}, ["infer-1"]),
    ]
