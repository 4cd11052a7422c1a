"""The cluster document from measured data: exact entries and totals (values written by hand)."""

import json

from aggregator.onboarding.document import (
    cluster_totals,
    kube_node_entry,
    node_entry,
    parse_quantity,
    populate_document,
    unmeasured_fields,
    with_node,
    without_node,
)
from aggregator.onboarding.validate import normalise_config
from proto.telemetry.v1.readings import MIB, HostSample, NodeInventory, NodeSample
from tests.support.onboarding_data import (
    ENTRY_A,
    ENTRY_B,
    ENTRY_C,
    ENTRY_D,
    SAMPLE_CONFIG_TEXT,
    TOTALS_ABC,
    TOTALS_ABCD,
    cpu_node_a,
    expected_document,
    gpu_node_b,
    gpu_node_c,
)


def test_node_entries_are_exactly_the_contract_shape():
    assert node_entry(cpu_node_a()) == ENTRY_A
    assert node_entry(gpu_node_b()) == ENTRY_B
    assert node_entry(gpu_node_c()) == ENTRY_C


def test_populated_document_keeps_the_input_and_adds_nodes_and_totals():
    config = normalise_config(json.loads(SAMPLE_CONFIG_TEXT))
    entries = [node_entry(n) for n in (cpu_node_a(), gpu_node_b(), gpu_node_c())]
    document = populate_document(config, entries)
    assert document == expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    assert config["nodes"] == {"nodeData": []}  # the input is not changed


def test_adding_and_removing_a_node_updates_the_totals():
    document = expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    added = with_node(document, ENTRY_D)
    assert added == expected_document([ENTRY_A, ENTRY_B, ENTRY_C, ENTRY_D], TOTALS_ABCD)
    assert document == expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)  # the input is not changed
    assert with_node(added, ENTRY_D) == added  # same id replaces, never duplicates
    removed = without_node(added, "node-d")
    assert removed == expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    assert added == expected_document([ENTRY_A, ENTRY_B, ENTRY_C, ENTRY_D], TOTALS_ABCD)  # the input is not changed
    assert without_node(added, "node-zz") == added


def test_totals_tolerate_entries_a_policy_reshaped():
    assert cluster_totals([{"id": "x", "memory": 10, "gpus": "?"}, {"id": "y", "memory": True}]) == {
        "gpus": {"count": 0, "memory": 0}, "vcpus": {"count": 0}, "memory": 10, "swap": 0,
        "storage": {"disks": 0, "size": 0}, "network": {"interfaces": 0, "txBandwidth": 0, "rxBandwidth": 0},
    }


def test_what_was_not_measured_is_named():
    assert unmeasured_fields(gpu_node_c()) == ["network.txBandwidth/rxBandwidth: link speed unknown for eno1"]
    assert unmeasured_fields(cpu_node_a()) == ["gpus: not read (NVML: library not found)"]
    assert unmeasured_fields(gpu_node_b()) == []
    bare = NodeInventory(node_id="n", node_name="n", host=None)
    assert unmeasured_fields(bare) == [
        "vcpus.count, memory, swap, storage, network: host inventory not reported by the agent"
    ]
    latest = NodeSample(timestamp=1.0, host=HostSample(memory_total_bytes=2048 * MIB, swap_total_bytes=512 * MIB))
    assert node_entry(bare, latest)["memory"] == 2048
    assert node_entry(bare, latest)["swap"] == 512
    assert unmeasured_fields(bare, latest) == ["vcpus.count, storage, network: host inventory not reported by the agent"]


def test_kubernetes_quantities():
    assert parse_quantity("16393308Ki") == 16393308 * 1024
    assert parse_quantity("64Gi") == 64 * 2**30
    assert parse_quantity("7500m") * 1000 == 7500
    assert parse_quantity("1e9") == 10**9
    assert parse_quantity("8") == 8


def kube_node(name, labels=None, annotations=None, capacity=None):
    return {
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "status": {"capacity": capacity if capacity is not None else
                   {"cpu": "48", "memory": "263786520Ki", "ephemeral-storage": "961279400Ki", "pods": "110"}},
    }


def test_kubernetes_fallback_entry_from_capacity_and_annotation():
    annotation = json.dumps([
        {"modelName": "NVIDIA A100-SXM4-80GB", "memory": 81920, "uuid": "GPU-1", "features": ["bf16", "fp16"]},
        {"modelName": "NVIDIA A100-SXM4-80GB", "memory": 81920, "uuid": "GPU-2", "features": ["tf32", "fp16"]},
    ])
    reading = kube_node_entry(kube_node("k-1", {"nodeID": "nid-1"}, {"gpu.aios/info": annotation}))
    assert reading.has_node_id_label
    assert reading.entry == {
        "id": "nid-1",
        "gpus": {"count": 2, "memory": 163840,
                 "gpus": [{"modelName": "NVIDIA A100-SXM4-80GB", "memory": 81920}] * 2,
                 "features": ["bf16", "fp16", "tf32"], "modelNames": ["NVIDIA A100-SXM4-80GB"]},
        "vcpus": {"count": 48}, "memory": 257604, "swap": 0,
        "storage": {"disks": 0, "size": 938749},
        "network": {"interfaces": 0, "txBandwidth": 0, "rxBandwidth": 0},
    }
    assert reading.unmeasured == (
        "swap: not measured (no agent)",
        "storage.disks: not measured (no agent); storage.size is the kubelet's ephemeral-storage capacity",
        "network: not measured (no agent)",
    )


def test_kubernetes_fallback_without_label_or_annotation():
    old_script = json.dumps([{"modelName": "Tesla T4", "memory": 15360}])
    reading = kube_node_entry(kube_node("k-2", annotations={"gpu.aios/info": old_script}, capacity={"cpu": "4"}))
    assert not reading.has_node_id_label
    assert reading.entry["id"] == "k-2"
    assert reading.entry["gpus"]["count"] == 1
    assert reading.unmeasured[:3] == (
        "memory: no capacity reported by Kubernetes",
        "ephemeral-storage: no capacity reported by Kubernetes",
        "gpus.features: not measured (the annotation carries no features)",
    )
    broken = kube_node_entry(kube_node("k-3", annotations={"gpu.aios/info": "[{"}))
    assert broken.entry["gpus"]["count"] == 0
    assert broken.unmeasured[0].startswith("gpus: gpu.aios/info annotation unreadable")
    absent = kube_node_entry(kube_node("k-4"))
    assert absent.unmeasured[0] == "gpus: not known (no gpu.aios/info annotation)"
