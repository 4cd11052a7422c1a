"""The `gpu.aios/info` annotation: a pure function of the GPU inventory.

Contract (docs/network-formats.md §1, docs/node-annotation.md): a JSON array, one object per GPU, each with
at least `modelName` (NVML device name) and `memory` (total, integer MB).
Consumers ignore other keys, so we add a few that help operators.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from proto.telemetry.v1.readings import GpuInventory

__all__ = ["ANNOTATION_KEY", "gpu_annotation_entries", "gpu_annotation_value"]

ANNOTATION_KEY = "gpu.aios/info"


def gpu_annotation_entries(gpus: Iterable[GpuInventory]) -> list[dict]:
    entries = []
    for gpu in sorted(gpus, key=lambda g: g.index):
        entry: dict = {"modelName": gpu.name, "memory": int(gpu.memory_mb)}
        entry["index"] = gpu.index
        entry["uuid"] = gpu.uuid
        if gpu.compute_capability is not None:
            major, minor = gpu.compute_capability
            entry["computeCapability"] = f"{major}.{minor}"
        if gpu.features:
            entry["features"] = list(gpu.features)
        if gpu.mig_enabled is not None:
            entry["migEnabled"] = gpu.mig_enabled
        if gpu.mig_devices:
            entry["migDevices"] = [
                {"uuid": m.uuid, "memory": int(m.memory_mb), "profile": m.profile}
                for m in gpu.mig_devices
            ]
        entries.append(entry)
    return entries


def gpu_annotation_value(gpus: Iterable[GpuInventory]) -> str:
    """Compact, key-sorted JSON, so equal inventories give byte-equal values."""
    return json.dumps(gpu_annotation_entries(gpus), separators=(",", ":"), sort_keys=True)
