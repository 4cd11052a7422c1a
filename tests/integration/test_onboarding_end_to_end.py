"""Onboarding with real parts end to end: `aios-aggregator serve` and `aios-agent run`
processes (fake NVML, fixture /proc and /sys trees with different disks and NICs),
the onboard command reading the aggregator over gRPC, the parser stand-in.

Three agents (0, 2 and 8 GPUs) are onboarded; a fourth joins later and is
enrolled by the aggregator exactly once, even across an aggregator restart;
an enrolled node that loses a GPU has its stored entry and the totals updated.
"""

import io
import json
import shutil
import time

import grpc
import pytest

from aggregator.commands.onboard import main as onboard_main
from proto.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from tests.fakenvml import FakeNvml
from tests.fakenvml.presets import h100_sxm, t4
from tests.integration.parser_standin import ParserStandIn
from tests.support.hostfs import Counters, _disk, _nic, write_host_tree
from tests.support.onboarding_data import SAMPLE_CONFIG_TEXT, expected_document
from tests.support.telemetry import TOKEN, AgentProcess, AggregatorProcess, get_node, list_nodes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

T4 = {"modelName": "Tesla T4", "memory": 15360}
H100 = {"modelName": "NVIDIA H100 80GB HBM3", "memory": 81559}
T4_FEATURES = ["fp16", "fp32", "int4", "int8", "tensor_cores", "tensor_cores_gen2"]
H100_FEATURES = ["bf16", "dpx", "fp16", "fp32", "fp64", "fp64_tensor_cores", "fp8", "int8", "structured_sparsity",
                 "tensor_cores", "tensor_cores_gen4", "tf32", "thread_block_clusters", "tma", "transformer_engine"]
# every fixture host: 8 logical CPUs, 256 GiB of memory, 8 GiB of swap
HOST = {"vcpus": {"count": 8}, "memory": 262144, "swap": 8192}
NO_GPUS = {"count": 0, "memory": 0, "gpus": [], "features": [], "modelNames": []}

ENTRY_A = {"id": "node-a", "gpus": NO_GPUS, **HOST,
           "storage": {"disks": 1, "size": 1831420},
           "network": {"interfaces": 1, "txBandwidth": 25000, "rxBandwidth": 25000}}
ENTRY_B = {"id": "node-b",
           "gpus": {"count": 2, "memory": 30720, "gpus": [T4, T4], "features": T4_FEATURES, "modelNames": ["Tesla T4"]},
           **HOST, "storage": {"disks": 2, "size": 5494260},
           "network": {"interfaces": 2, "txBandwidth": 125000, "rxBandwidth": 125000}}
ENTRY_C = {"id": "node-c",
           "gpus": {"count": 8, "memory": 652472, "gpus": [H100] * 8, "features": H100_FEATURES,
                    "modelNames": ["NVIDIA H100 80GB HBM3"]},
           **HOST, "storage": {"disks": 3, "size": 12819940},
           "network": {"interfaces": 3, "txBandwidth": 125000, "rxBandwidth": 125000}}
ENTRY_D = {"id": "node-d",
           "gpus": {"count": 1, "memory": 15360, "gpus": [T4], "features": T4_FEATURES, "modelNames": ["Tesla T4"]},
           **HOST, "storage": {"disks": 2, "size": 5494260},
           "network": {"interfaces": 1, "txBandwidth": 100000, "rxBandwidth": 100000}}
TOTALS_ABC = {"gpus": {"count": 10, "memory": 683192}, "vcpus": {"count": 24}, "memory": 786432, "swap": 24576,
              "storage": {"disks": 6, "size": 20145620},
              "network": {"interfaces": 6, "txBandwidth": 275000, "rxBandwidth": 275000}}
TOTALS_ABCD = {"gpus": {"count": 11, "memory": 698552}, "vcpus": {"count": 32}, "memory": 1048576, "swap": 32768,
               "storage": {"disks": 8, "size": 25639880},
               "network": {"interfaces": 7, "txBandwidth": 375000, "rxBandwidth": 375000}}


def host_tree(root, *, drop_disks=(), drop_nics=(), extra_disk_mb=None, nic_without_speed=False):
    """The fixture host (2 NVMe disks, NICs of 25 and 100 Gb/s), varied per node."""
    write_host_tree(root, Counters())
    for disk in drop_disks:
        shutil.rmtree(root / "sys/block" / disk)
    for nic in drop_nics:
        shutil.rmtree(root / "sys/class/net" / nic)
    if extra_disk_mb:
        _disk(root / "sys", "nvme2n1", extra_disk_mb, model="KIOXIA KCD8XRUG7T68", partitions=())
    if nic_without_speed:  # a real NIC whose link is down: the kernel knows no speed
        _nic(root / "sys", "ens3f0", speed=None, mac="b8:ce:f6:00:00:09", device=True)
    return root


def stored_document(address, cluster_id):
    with grpc.insecure_channel(address) as channel:
        answer = cluster_pb2_grpc.ClusterDocumentsStub(channel).GetClusterDocument(
            cluster_pb2.GetClusterDocumentRequest(cluster_id=cluster_id), timeout=5,
            metadata=(("authorization", f"Bearer {TOKEN}"),))
    return json.loads(answer.document_json)


@pytest.fixture
def parts(tmp_path, fake_nvml_lib):
    parser = ParserStandIn()
    aggregator = AggregatorProcess(tmp_path, extra_args=("--cluster-id", "cluster-eu-1", "--api-url", parser.url))
    agents = []
    nvmls = {}  # node id -> its agent's fake NVML, for live edits

    def agent(node_id, gpus, **tree):
        nvml = nvmls[node_id] = FakeNvml(fake_nvml_lib, tmp_path / f"nvml-{node_id}.conf").configure(gpus=gpus)
        root = host_tree(tmp_path / f"host-{node_id}", **tree)
        process = AgentProcess(tmp_path, node_id, aggregator.address,
                               env={**nvml.env, "AIOS_HOST_ROOT": str(root)})
        agents.append(process)
        return process

    try:
        yield parser, aggregator.start(), agent, nvmls
    finally:
        for process in agents:
            process.stop()
        aggregator.stop()
        parser.close()


def test_three_agents_onboarded_then_a_fourth_enrolled_once(tmp_path, parts):
    parser, aggregator, agent, nvmls = parts
    agent("node-a", [], drop_disks=("nvme1n1",), drop_nics=("ens2f0",))
    agent("node-b", [t4(0), t4(1)])
    agent("node-c", [h100_sxm(i) for i in range(8)], extra_disk_mb=7325680, nic_without_speed=True)
    wait_for(lambda: len(list_nodes(aggregator.address)) == 3, what="three agents known to the aggregator")

    config = tmp_path / "config.json"
    config.write_text(SAMPLE_CONFIG_TEXT)
    out, err = io.StringIO(), io.StringIO()
    code = onboard_main([str(config), "--onboard", "--api-url", parser.url, "--output", str(tmp_path),
                         "--aggregator", aggregator.address, "--token", TOKEN, "--no-kubernetes"], out=out, err=err)
    assert code == 0, err.getvalue()
    expected = expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    assert json.loads((tmp_path / "cluster-eu-1_populated.json").read_text()) == expected
    assert parser.problems == []
    assert [b["body"]["spec"]["values"] for b in parser.bodies("/api/createCluster")] == [expected]
    assert "warning: node node-c: network.txBandwidth/rxBandwidth: link speed unknown for ens3f0" in err.getvalue()
    assert stored_document(aggregator.address, "cluster-eu-1") == expected

    # a fourth node joins: the aggregator enrolls it by itself
    agent("node-d", [t4(0)], drop_nics=("ens1f0",))
    wait_for(lambda: parser.bodies("/api/addNode"), what="the fourth node posted to /api/addNode")
    assert parser.problems == []
    assert parser.bodies("/api/addNode")[0]["body"]["spec"]["values"] == {"clusterId": "cluster-eu-1",
                                                                          "nodeData": ENTRY_D}
    after = expected_document([ENTRY_A, ENTRY_B, ENTRY_C, ENTRY_D], TOTALS_ABCD)
    wait_for(lambda: stored_document(aggregator.address, "cluster-eu-1") == after, what="node-d in the stored document")

    # the aggregator restarts: every agent says hello again; node-d must not be added twice
    aggregator.kill()
    restarted_at = time.time()
    aggregator.start()
    wait_for(lambda: (get_node(aggregator.address, "node-d") or None) and
             get_node(aggregator.address, "node-d").summary.last_seen > restarted_at, what="node-d back")
    agent("node-e", [])  # a barrier: enrollment is one queue, node-e comes after anything node-d caused
    wait_for(lambda: len(parser.bodies("/api/addNode")) >= 2, what="node-e enrolled")
    assert [b["body"]["spec"]["values"]["nodeData"]["id"] for b in parser.bodies("/api/addNode")] == ["node-d", "node-e"]
    document = stored_document(aggregator.address, "cluster-eu-1")
    assert [e["id"] for e in document["nodes"]["nodeData"]] == ["node-a", "node-b", "node-c", "node-d", "node-e"]
    assert document["nodes"]["count"] == 5

    # node-c loses a GPU: its stored entry and the cluster totals follow, nothing is posted
    nvmls["node-c"].lose_gpu(7)
    entry_c_7 = {**ENTRY_C, "gpus": {**ENTRY_C["gpus"], "count": 7, "memory": 570913, "gpus": [H100] * 7}}
    wait_for(lambda: stored_document(aggregator.address, "cluster-eu-1")["nodes"]["nodeData"][2] == entry_c_7,
             what="node-c's entry with 7 GPUs")
    document = stored_document(aggregator.address, "cluster-eu-1")
    assert document["gpus"] == {"count": 10, "memory": 616993}
    assert [e["id"] for e in document["nodes"]["nodeData"]] == ["node-a", "node-b", "node-c", "node-d", "node-e"]
    assert len(parser.requests) == 3  # createCluster, addNode x2
