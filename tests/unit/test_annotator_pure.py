"""Pure parts of the annotator: desired metadata, merge patches, label values, backoff."""

import json
import random
import re

import pytest

from agent.kube.annotation import ANNOTATION_KEY
from agent.kube.annotator import (
    Backoff,
    NodeGpuMetadata,
    desired_metadata,
    label_value,
    metadata_patch,
    owned_metadata,
)
from proto.telemetry.v1.readings import MIB, GpuInventory, NodeInventory

# The label-value rule as Kubernetes documents it (independent of our code).
K8S_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def gpu(index, name="NVIDIA A100-SXM4-80GB", memory_mb=81920, **kw):
    return GpuInventory(index=index, uuid=f"GPU-{index:08d}", name=name, memory_bytes=memory_mb * MIB, **kw)


def node(*gpus, **kw):
    return NodeInventory(node_id="id-1", node_name="n1", host=None, gpus=tuple(gpus), **kw)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
        ("Tesla T4", "Tesla-T4"),
        ("  NVIDIA H100 80GB HBM3 ", "NVIDIA-H100-80GB-HBM3"),
        ("GeForce RTX 4090 (Founders)", "GeForce-RTX-4090-Founders"),
        ("---", None),
        ("", None),
        ("x" * 70 + ".y", "x" * 63),
        ("a" * 62 + "-b", "a" * 62),  # cut at 63 would end in "-": trimmed
    ],
)
def test_label_value_is_valid_for_kubernetes(text, expected):
    value = label_value(text)
    assert value == expected
    if value is not None:
        assert len(value) <= 63 and K8S_LABEL_VALUE.match(value)


def test_no_gpu_node_gets_empty_array_and_count_zero_only():
    meta = desired_metadata(node(nvml_status="NVML library not found"))
    assert json.loads(meta.annotations[ANNOTATION_KEY]) == []
    assert meta.labels == {"gpu.aios/count": "0"}


def test_eight_identical_gpus_give_stable_labels():
    meta = desired_metadata(node(*[gpu(i, architecture="ampere", mig_enabled=False) for i in range(8)]))
    assert meta.labels == {
        "gpu.aios/count": "8",
        "gpu.aios/product": "NVIDIA-A100-SXM4-80GB",
        "gpu.aios/memory-mb": "81920",
        "gpu.aios/architecture": "ampere",
        "gpu.aios/mig-enabled": "false",
    }
    entries = json.loads(meta.annotations[ANNOTATION_KEY])
    assert [e["index"] for e in entries] == list(range(8))


def test_mixed_gpus_leave_out_labels_they_do_not_share():
    meta = desired_metadata(node(gpu(0), gpu(1, name="Tesla T4", memory_mb=15360, mig_enabled=None)))
    assert meta.labels == {"gpu.aios/count": "2", "gpu.aios/memory-mb": "15360"}


def test_same_inventory_gives_equal_metadata_so_no_patch():
    a = desired_metadata(node(gpu(1), gpu(0)))
    b = desired_metadata(node(gpu(0), gpu(1)))
    assert a == b
    assert metadata_patch(a, b) is None


def test_patch_touches_only_changed_owned_keys():
    current = NodeGpuMetadata(
        annotations={ANNOTATION_KEY: "[]"},
        labels={"gpu.aios/count": "1", "gpu.aios/product": "Tesla-T4"},
    )
    desired = NodeGpuMetadata(annotations={ANNOTATION_KEY: "[]"}, labels={"gpu.aios/count": "0"})
    assert metadata_patch(desired, current) == {"metadata": {"labels": {"gpu.aios/count": "0", "gpu.aios/product": None}}}


def test_owned_metadata_ignores_everyone_elses_keys():
    mine = owned_metadata(
        {ANNOTATION_KEY: "[]", "other/x": "1"},
        {"nodeID": "id-1", "gpu.aios/count": "0", "gpu.aios/operator-note": "keep"},
    )
    assert mine == NodeGpuMetadata(annotations={ANNOTATION_KEY: "[]"}, labels={"gpu.aios/count": "0"})


def test_dry_run_patch_sets_every_owned_key_and_nulls_the_rest():
    patch = metadata_patch(desired_metadata(node()), None)
    assert patch["metadata"]["annotations"] == {ANNOTATION_KEY: "[]"}
    assert patch["metadata"]["labels"] == {
        "gpu.aios/count": "0",
        "gpu.aios/product": None,
        "gpu.aios/memory-mb": None,
        "gpu.aios/architecture": None,
        "gpu.aios/mig-enabled": None,
    }


def test_backoff_grows_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(initial_s=1.0, cap_s=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError, match="cap_s"):
        Backoff(initial_s=5, cap_s=1)
