"""Who is on the GPU, on /metrics: pod labels on per-GPU series, holders, MIG use, capped per-process series."""

from dataclasses import replace

from prometheus_client import generate_latest

from agent.metrics import AgentMetricsProviders, AgentMetricsState, build_agent_registry
from proto.telemetry.v1.readings import Attribution
from tests.metrics_fixtures.exposition import parse_exposition, promtool_check, value
from tests.metrics_fixtures.readings import ATTRIBUTED_INVENTORY, ATTRIBUTED_SAMPLE, GIB

GPU0 = {"node": "node-d", "gpu": "0", "uuid": "GPU-dddd", "model": "NVIDIA H100 80GB HBM3"}
GPU1 = {"node": "node-d", "gpu": "1", "uuid": "GPU-eeee", "model": "NVIDIA A100-SXM4-80GB"}
TRAINER = {"namespace": "ml", "pod": "train-0", "container": "trainer"}


def scrape(sample=ATTRIBUTED_SAMPLE, *, max_process_series=None) -> str:
    state = AgentMetricsState()
    state.record(ATTRIBUTED_INVENTORY, sample)
    providers = AgentMetricsProviders(state.readings)
    if max_process_series is not None:
        providers = replace(providers, max_process_series=max_process_series)
    return generate_latest(build_agent_registry(providers, process_metrics=False)).decode()


def test_a_gpu_held_whole_carries_its_pod_on_every_series():
    m = parse_exposition(scrape())
    assert value(m, "aios_gpu_utilization_ratio", **GPU0, **TRAINER) == 0.93
    assert value(m, "aios_gpu_temperature_celsius", **GPU0, **TRAINER) == 64.0
    assert value(m, "aios_gpu_info", **GPU0, **TRAINER, pci_bus_id="00000000:07:00.0", compute_capability="9.0",
                 architecture="hopper") == 1  # fmt: skip
    # split into MIG devices held by two pods: no single pod for the GPU's own series
    assert value(m, "aios_gpu_utilization_ratio", **GPU1) == 0.2


def test_every_holder_is_listed_with_its_device():
    m = parse_exposition(scrape())
    info = {dict(labels)["pod"]: dict(labels) for name, labels in m if name == "aios_gpu_pod_info"}
    assert info == {
        "train-0": {**GPU0, **TRAINER, "resource": "nvidia.com/gpu"},
        "infer-0": {**GPU1, "namespace": "serve", "pod": "infer-0", "container": "server", "mig_uuid": "MIG-1111",
                    "resource": "nvidia.com/mig-3g.40gb"},
        "infer-1": {**GPU1, "namespace": "serve", "pod": "infer-1", "container": "server", "mig_uuid": "MIG-2222",
                    "resource": "nvidia.com/mig-1g.10gb"},
    }  # fmt: skip


def test_mig_devices_have_their_memory_and_their_pod():
    m = parse_exposition(scrape())
    mig0 = {**GPU1, "namespace": "serve", "pod": "infer-0", "container": "server", "mig": "0", "mig_uuid": "MIG-1111",
            "profile": "3g.40gb"}  # fmt: skip
    assert value(m, "aios_mig_memory_total_bytes", **mig0) == 40 * GIB
    assert value(m, "aios_mig_memory_used_bytes", **mig0) == 8 * GIB
    assert not [k for k in m if k[0] == "aios_mig_utilization_ratio"]  # NVML has none for MIG devices


def test_processes_by_memory_with_their_owners():
    m = parse_exposition(scrape())
    node0 = {"node": "node-d", "gpu": "0", "uuid": "GPU-dddd"}
    assert value(m, "aios_gpu_process_memory_used_bytes", **node0, pid="4101", **TRAINER) == 20 * GIB
    assert value(m, "aios_gpu_process_memory_used_bytes", **node0, pid="7001") == 300 * 1024 * 1024  # a host process
    on_mig = {"node": "node-d", "gpu": "1", "uuid": "GPU-eeee", "pid": "5301", "mig_uuid": "MIG-2222",
              "namespace": "serve", "pod": "infer-1", "container": "server"}  # fmt: skip
    assert value(m, "aios_gpu_process_memory_used_bytes", **on_mig) == 4 * GIB
    assert value(m, "aios_node_gpu_processes_not_exposed", node="node-d") == 0


def test_per_process_series_are_capped_to_the_largest():
    m = parse_exposition(scrape(max_process_series=2))
    pids = sorted(dict(labels)["pid"] for name, labels in m if name == "aios_gpu_process_memory_used_bytes")
    assert pids == ["4101", "5201"]  # 20 GiB and 8 GiB; 4 GiB, 2 GiB and 300 MiB left out
    assert value(m, "aios_node_gpu_processes_not_exposed", node="node-d") == 3


def test_attribution_state_and_allocatable():
    m = parse_exposition(scrape())
    assert value(m, "aios_node_gpu_attribution_up", node="node-d") == 1
    assert value(m, "aios_node_gpu_allocatable", node="node-d", resource="nvidia.com/gpu") == 1
    down = replace(ATTRIBUTED_SAMPLE, attribution=Attribution(False, "no kubelet pod-resources socket at /x"))
    m = parse_exposition(scrape(down))
    assert value(m, "aios_node_gpu_attribution_up", node="node-d", reason="no kubelet pod-resources socket at /x") == 0
    assert value(m, "aios_gpu_utilization_ratio", **GPU0) == 0.93  # no pod labels, same series as before attribution


def test_a_deleted_pod_s_labels_are_gone_from_the_next_scrape():
    # what the agent reports once the kubelet no longer lists ml/train-0: no allocation,
    # and its processes (still running) keep only their cgroup identity
    attribution = ATTRIBUTED_SAMPLE.attribution
    assert attribution is not None
    owners = tuple(replace(o, namespace="", pod="", container="") if o.pod == "train-0" else o for o in attribution.owners)
    without = replace(attribution, allocations=attribution.allocations[1:], owners=owners)
    m = parse_exposition(scrape(replace(ATTRIBUTED_SAMPLE, attribution=without)))
    assert not [(name, labels) for name, labels in m if dict(labels).get("pod") == "train-0"]
    assert value(m, "aios_gpu_utilization_ratio", **GPU0) == 0.93
    assert value(m, "aios_gpu_process_memory_used_bytes", node="node-d", gpu="0", uuid="GPU-dddd", pid="4101") == 20 * GIB


def test_the_exposition_is_promtool_clean():
    promtool_check(scrape())
