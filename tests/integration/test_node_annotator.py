"""NodeAnnotator against a Kubernetes API server on loopback (kmock), through the
official `kubernetes` client configured from a kubeconfig file."""

import json
import logging
import threading

import pytest
from kubernetes.client import CoreV1Api

from agent.kube.annotator import Backoff, NodeAnnotator
from agent.kube.client import KubeApiError, load_api_client, read_node_identity
from proto.telemetry.v1.readings import MIB, GpuInventory, NodeInventory
from tests.support.kube_api import forbidden, kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

NODE = "gpu-node-1"
OTHER_ANNOTATIONS = {"node.alpha.kubernetes.io/ttl": "0", "team/owner": "ml-infra"}
OTHER_LABELS = {"nodeID": "nid-0001", "kubernetes.io/hostname": NODE, "gpu.aios/operator-note": "rack-3"}


def a100(index):
    return GpuInventory(index=index, uuid=f"GPU-a100-{index}", name="NVIDIA A100-SXM4-80GB", memory_bytes=81920 * MIB,
                        compute_capability=(8, 0), architecture="ampere", mig_enabled=False)


def h100(index):
    return GpuInventory(index=index, uuid=f"GPU-h100-{index}", name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB,
                        compute_capability=(9, 0), architecture="hopper", mig_enabled=False)


def inventory(gpus):
    return NodeInventory(node_id="nid-0001", node_name=NODE, host=None, gpus=tuple(gpus))


def consume(annotation: str) -> tuple[int, int, set[str]]:
    """What onboarding does with the annotation (docs/network-formats.md §1)."""
    entries = json.loads(annotation)
    return len(entries), sum(e["memory"] for e in entries), {e["modelName"] for e in entries}


@pytest.fixture
def core_v1(kube_api):
    return CoreV1Api(load_api_client(str(kube_api.kubeconfig), env={}))


@pytest.fixture
def make_annotator(core_v1):
    started = []

    def make(resync_interval_s=0.2, request_timeout_s=2.0, **kw):
        annotator = NodeAnnotator(core_v1, NODE, resync_interval_s=resync_interval_s,
                                  request_timeout_s=request_timeout_s,
                                  backoff=Backoff(initial_s=0.05, cap_s=0.2), env={}, **kw)
        started.append(annotator)
        return annotator

    yield make
    for annotator in started:
        annotator.stop()


def seeded(kube_api):
    kube_api.put_node(NODE, labels=OTHER_LABELS, annotations=OTHER_ANNOTATIONS)


def test_first_annotation_touches_only_our_keys(kube_api, make_annotator):
    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=60)
    annotator.start()
    annotator.observe(inventory([a100(i) for i in range(8)]))
    kube_api.wait_for(lambda: "gpu.aios/info" in kube_api.annotations(NODE), what="the first annotation")

    assert consume(kube_api.annotations(NODE)["gpu.aios/info"]) == (8, 8 * 81920, {"NVIDIA A100-SXM4-80GB"})
    assert kube_api.annotations(NODE) == {**OTHER_ANNOTATIONS, "gpu.aios/info": kube_api.annotations(NODE)["gpu.aios/info"]}
    assert kube_api.labels(NODE) == {
        **OTHER_LABELS,
        "gpu.aios/count": "8",
        "gpu.aios/product": "NVIDIA-A100-SXM4-80GB",
        "gpu.aios/memory-mb": "81920",
        "gpu.aios/architecture": "ampere",
        "gpu.aios/mig-enabled": "false",
    }
    (patch,) = kube_api.requests("PATCH")
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert set(patch.data) == {"metadata"}
    assert set(patch.data["metadata"]["annotations"]) == {"gpu.aios/info"}
    assert all(key.startswith("gpu.aios/") for key in patch.data["metadata"]["labels"])
    assert annotator.status().identity.node_id == "nid-0001"


def test_unchanged_resync_sends_no_patch(kube_api, make_annotator):
    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=0.1)
    annotator.start()
    inv = inventory([a100(0)])
    annotator.observe(inv)
    kube_api.wait_for(lambda: len(kube_api.requests("PATCH")) == 1, what="the first patch")
    for _ in range(5):
        annotator.observe(inventory([a100(0)]))  # equal readings, new objects
    kube_api.wait_for(lambda: len(kube_api.requests("GET")) >= 4, what="three resyncs")

    assert len(kube_api.requests("PATCH")) == 1
    assert annotator.status().in_sync and annotator.status().patches == 1


def test_restart_with_a_true_node_sends_no_patch(kube_api, core_v1):
    seeded(kube_api)
    first = NodeAnnotator(core_v1, NODE, env={})
    assert first.sync_once(inventory([h100(0)])) is not None
    second = NodeAnnotator(core_v1, NODE, env={})  # the agent restarted
    assert second.sync_once(inventory([h100(0)])) is None
    assert len(kube_api.requests("PATCH")) == 1


def test_inventory_change_rewrites_annotation_and_removes_labels(kube_api, make_annotator):
    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=60)
    annotator.start()
    annotator.observe(inventory([a100(i) for i in range(8)]))
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "8", what="8 GPUs")

    annotator.observe(inventory([a100(i) for i in range(8) if i != 3]))  # GPU 3 fell off the bus
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "7", what="7 GPUs")
    assert consume(kube_api.annotations(NODE)["gpu.aios/info"]) == (7, 7 * 81920, {"NVIDIA A100-SXM4-80GB"})

    annotator.observe(inventory([]))  # the driver went away: no GPU readable
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "0", what="0 GPUs")
    assert kube_api.annotations(NODE)["gpu.aios/info"] == "[]"
    assert kube_api.labels(NODE) == {**OTHER_LABELS, "gpu.aios/count": "0"}
    removal = kube_api.requests("PATCH")[-1].data["metadata"]["labels"]
    assert removal["gpu.aios/product"] is None and removal["gpu.aios/memory-mb"] is None
    assert len(kube_api.requests("PATCH")) == 3


def test_deleted_annotation_is_restored_at_next_resync(kube_api, core_v1, make_annotator):
    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=0.2)
    annotator.start()
    annotator.observe(inventory([h100(0), h100(1)]))
    kube_api.wait_for(lambda: "gpu.aios/info" in kube_api.annotations(NODE), what="the first annotation")
    written = kube_api.annotations(NODE)["gpu.aios/info"]

    # An operator removes our annotation and relabels the product by hand.
    core_v1.patch_node(NODE, {"metadata": {"annotations": {"gpu.aios/info": None},
                                           "labels": {"gpu.aios/product": "hand-edited"}}},
                       _content_type="application/merge-patch+json")
    assert "gpu.aios/info" not in kube_api.annotations(NODE)

    kube_api.wait_for(lambda: kube_api.annotations(NODE).get("gpu.aios/info") == written, what="the restore")
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/product") == "NVIDIA-H100-80GB-HBM3",
                      what="the product label restored")
    assert {k: v for k, v in kube_api.annotations(NODE).items() if k != "gpu.aios/info"} == OTHER_ANNOTATIONS
    agent_patches = [r for r in kube_api.requests("PATCH") if r.data != {"metadata": {
        "annotations": {"gpu.aios/info": None}, "labels": {"gpu.aios/product": "hand-edited"}}}]
    assert len(agent_patches) == 2  # the first write and the one restore


@pytest.mark.parametrize("gpus, expected", [
    ([], (0, 0, set())),
    ([h100(0)], (1, 81559, {"NVIDIA H100 80GB HBM3"})),
    ([a100(i) for i in range(4)] + [h100(i) for i in range(4, 8)],
     (8, 4 * 81920 + 4 * 81559, {"NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"})),
])
def test_consumer_reads_count_memory_and_models(kube_api, core_v1, gpus, expected):
    seeded(kube_api)
    NodeAnnotator(core_v1, NODE, env={}).sync_once(inventory(gpus))
    # The consumer reads the Node through the API, as onboarding does.
    annotation = core_v1.read_node(NODE).metadata.annotations["gpu.aios/info"]
    assert consume(annotation) == expected


def test_api_server_down_then_back_converges_while_observe_keeps_going(kube_api, make_annotator):
    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=0.2, request_timeout_s=0.5)
    annotator.start()
    annotator.observe(inventory([a100(0), a100(1)]))
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "2", what="2 GPUs")

    kube_api.go_down()
    kube_api.wait_for(lambda: annotator.status().consecutive_failures >= 2, what="failures while down")
    assert "unreachable" in annotator.status().last_error
    # Sampling goes on: observe() records the change without waiting on the API.
    observed = threading.Event()

    def sampling_loop():
        for n in range(50):
            annotator.observe(inventory([a100(0)] if n % 2 else [a100(0), a100(1), a100(2)]))
        annotator.observe(inventory([a100(0)]))
        observed.set()

    sampler = threading.Thread(target=sampling_loop)
    sampler.start()
    sampler.join(5)
    assert observed.is_set(), "observe() blocked while the API server was down"
    assert kube_api.labels(NODE).get("gpu.aios/count") == "2"

    kube_api.start()
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "1", what="convergence after return")
    kube_api.wait_for(lambda: annotator.status().in_sync, what="in sync")
    assert consume(kube_api.annotations(NODE)["gpu.aios/info"]) == (1, 81920, {"NVIDIA A100-SXM4-80GB"})
    assert annotator.status().last_error == ""


def test_forbidden_patch_names_verb_and_resource(kube_api, make_annotator, caplog):
    seeded(kube_api)
    kube_api.emulator.refusals["PATCH"] = forbidden("patch", name=NODE)
    annotator = make_annotator(resync_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="agent.kube.annotator"):
        annotator.start()
        annotator.observe(inventory([a100(0)]))
        kube_api.wait_for(lambda: annotator.status().consecutive_failures >= 2, what="repeated 403s")

    error = annotator.status().last_error
    assert "forbidden (403)" in error and "cannot patch resource nodes" in error and "verbs [patch]" in error
    assert 'cannot patch resource "nodes"' in error  # the server's message is carried through
    assert any("forbidden (403)" in r.getMessage() and "retrying in" in r.getMessage() for r in caplog.records)
    assert "gpu.aios/info" not in kube_api.annotations(NODE)  # the refused patch changed nothing

    del kube_api.emulator.refusals["PATCH"]  # RBAC fixed: the retry goes through
    kube_api.wait_for(lambda: "gpu.aios/info" in kube_api.annotations(NODE), what="the annotation after the fix")


def test_node_gone_then_back(kube_api, make_annotator):
    annotator = make_annotator(resync_interval_s=0.2)
    annotator.start()
    annotator.observe(inventory([a100(0)]))
    kube_api.wait_for(lambda: annotator.status().consecutive_failures >= 1, what="a 404")
    assert "not found (404)" in annotator.status().last_error

    seeded(kube_api)  # the kubelet registers the Node again
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "1", what="the annotation")
    assert kube_api.labels(NODE)["nodeID"] == "nid-0001"


def test_slow_api_server_times_out_clearly(kube_api, core_v1):
    seeded(kube_api)
    kube_api.emulator.delay_s = 1.0
    annotator = NodeAnnotator(core_v1, NODE, request_timeout_s=0.2, env={})
    with pytest.raises(KubeApiError, match=r"get node 'gpu-node-1': the API server did not answer after 0.2 s"):
        annotator.sync_once(inventory([a100(0)]))


def test_identity_from_the_nodes_label(kube_api, core_v1):
    seeded(kube_api)
    identity = read_node_identity(core_v1, NODE, env={"NODE_ID": "from-env"})
    assert (identity.node_id, identity.id_source) == ("nid-0001", "label")
    kube_api.put_node("bare-node")
    identity = read_node_identity(core_v1, "bare-node", env={"NODE_ID": "from-env"})
    assert (identity.node_id, identity.id_source) == ("from-env", "env")


class _CrashingGpuCollector:
    name = "gpu"

    def inventory(self):
        raise RuntimeError("NVML call crashed")

    def sample(self):
        raise RuntimeError("NVML call crashed")

    def start(self):
        pass

    def set_event_listener(self, listener):
        pass

    def close(self):
        pass


class _NoHost:
    name = "host"

    def inventory(self):
        raise RuntimeError("no host reading in this test")

    def sample(self):
        raise RuntimeError("no host reading in this test")


def test_a_crashed_gpu_reading_does_not_wipe_the_annotation(kube_api, make_annotator):
    from agent.sampling.node_reader import NodeReader

    seeded(kube_api)
    annotator = make_annotator(resync_interval_s=0.1)
    annotator.start()
    annotator.observe(inventory([a100(0), a100(1)]))
    kube_api.wait_for(lambda: kube_api.labels(NODE).get("gpu.aios/count") == "2", what="2 GPUs")

    crashed = NodeReader("nid-0001", NODE, _CrashingGpuCollector(), _NoHost()).inventory()
    assert crashed.gpus == ()
    annotator.observe(crashed)
    reads = len(kube_api.requests("GET"))
    kube_api.wait_for(lambda: len(kube_api.requests("GET")) >= reads + 3, what="three more resyncs")
    assert len(kube_api.requests("PATCH")) == 1
    assert consume(kube_api.annotations(NODE)["gpu.aios/info"])[0] == 2


def test_open_node_annotator_from_kubeconfig_env(kube_api):
    from agent.kube.annotator import open_node_annotator

    seeded(kube_api)
    annotator = open_node_annotator(NODE, env={"KUBECONFIG": str(kube_api.kubeconfig), "AIOS_ANNOTATE_RESYNC_S": "0.5"})
    assert annotator.sync_once(inventory([a100(0)])) is not None
    assert kube_api.labels(NODE)["gpu.aios/count"] == "1"


def test_open_node_annotator_off_without_a_cluster(tmp_path, monkeypatch, caplog):
    from agent.kube.annotator import open_node_annotator

    monkeypatch.setenv("HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="agent.kube.annotator"):
        assert open_node_annotator(NODE, env={}) is None
    assert "node annotator off: no Kubernetes API configuration" in caplog.text
