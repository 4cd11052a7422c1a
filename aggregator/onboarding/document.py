"""The cluster document (docs/network-formats.md §2), built from measured data.

Pure functions only: inventories (or Kubernetes Node objects) in, JSON-ready
dicts out. Units: sizes in MB (1024*1024 bytes), bandwidth in Mbps.

What the numbers mean (decided here, written down once):
- `vcpus.count`: logical CPUs (hardware threads) the node's kernel sees, the
  same thing Kubernetes counts as CPU capacity.
- `memory`, `swap`: total RAM and total swap of the node.
- `storage.disks`: physical block devices the agent found (no partitions,
  loop, ram or device-mapper devices); `storage.size` their total size.
- `network.interfaces`: real NICs (no loopback, bridges, veth, tunnels);
  `txBandwidth` and `rxBandwidth`: the sum of their link speeds. Ethernet
  links are full duplex, so a link of N Mbps carries N each way: both fields
  hold the same sum. A NIC whose speed the kernel does not know adds 0 and
  is named as not measured.
- `gpus.features`: the union of what each GPU's compute capability implies
  (the agent derives them, `GpuInventory.features`), sorted;
  `gpus.modelNames`: the distinct NVML names in GPU index order.

Anything not measured is written as 0 (consumers add these numbers up, so a
number must stay a number) and named by `unmeasured_fields` /
`KubeNodeReading.unmeasured`, which the CLI prints as warnings; no
placeholder is ever presented as a measurement.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from proto.telemetry.v1.readings import NodeInventory, NodeSample

__all__ = [
    "GPU_ANNOTATION",
    "MB",
    "NODE_ID_LABEL",
    "KubeNodeReading",
    "cluster_totals",
    "document_node_ids",
    "kube_node_entry",
    "node_entry",
    "parse_quantity",
    "populate_document",
    "unmeasured_fields",
    "with_node",
    "without_node",
]

MB = 1024 * 1024
GPU_ANNOTATION = "gpu.aios/info"
NODE_ID_LABEL = "nodeID"
TOTAL_KEYS = ("gpus", "vcpus", "memory", "swap", "storage", "network")


# ---------------------------------------------------------------- one node, from the agent


def _gpus_block(gpus: Iterable[Any], model=lambda g: g.name, memory=lambda g: g.memory_mb,
                features=lambda g: g.features) -> dict:
    ordered = list(gpus)
    names: list[str] = []
    feature_set: set[str] = set()
    for gpu in ordered:
        if model(gpu) not in names:
            names.append(model(gpu))
        feature_set.update(features(gpu))
    return {
        "count": len(ordered),
        "memory": sum(int(memory(g)) for g in ordered),
        "gpus": [{"modelName": model(g), "memory": int(memory(g))} for g in ordered],
        "features": sorted(feature_set),
        "modelNames": names,
    }


def node_entry(inventory: NodeInventory, latest: NodeSample | None = None) -> dict:
    """The node's `nodes.nodeData[]` entry, from what its agent measured.

    `latest` fills memory and swap when the host inventory is missing (the
    host collector failed at hello time but samples arrive).
    """
    host = inventory.host
    gpus = _gpus_block(sorted(inventory.gpus, key=lambda g: g.index))
    if host is not None:
        vcpus, memory, swap = host.cpu_logical, host.memory_total_mb, host.swap_total_mb
        disks = len(host.disks)
        disk_size = sum(d.size_mb for d in host.disks)
        nics = len(host.nics)
        bandwidth = sum(n.speed_mbps or 0 for n in host.nics)
    else:
        sample_host = latest.host if latest is not None else None
        vcpus = 0
        memory = (sample_host.memory_total_mb or 0) if sample_host else 0
        swap = (sample_host.swap_total_mb or 0) if sample_host else 0
        disks = disk_size = nics = bandwidth = 0
    return {
        "id": inventory.node_id,
        "gpus": gpus,
        "vcpus": {"count": int(vcpus)},
        "memory": int(memory),
        "swap": int(swap),
        "storage": {"disks": disks, "size": int(disk_size)},
        "network": {"interfaces": nics, "txBandwidth": int(bandwidth), "rxBandwidth": int(bandwidth)},
    }


def unmeasured_fields(inventory: NodeInventory, latest: NodeSample | None = None) -> list[str]:
    """What `node_entry` had to write as 0 (or could not vouch for), and why."""
    notes: list[str] = []
    if inventory.nvml_status not in ("", "ok"):
        notes.append(f"gpus: not read (NVML: {inventory.nvml_status})")
    for gpu in inventory.gpus:
        if not gpu.features and gpu.compute_capability is None:
            notes.append(f"gpus.features: compute capability of GPU {gpu.index} unknown")
    host = inventory.host
    if host is None:
        sample_host = latest.host if latest is not None else None
        missing = ["vcpus.count", "storage", "network"]
        if sample_host is None or sample_host.memory_total_mb is None:
            missing.insert(1, "memory")
        if sample_host is None or sample_host.swap_total_mb is None:
            missing.insert(2, "swap")
        notes.append(f"{', '.join(missing)}: host inventory not reported by the agent")
    else:
        unknown = [n.name for n in host.nics if n.speed_mbps is None]
        if unknown:
            notes.append(
                "network.txBandwidth/rxBandwidth: link speed unknown for " + ", ".join(unknown)
            )
    return notes


# ---------------------------------------------------------------- the whole document


def _number(value: Any) -> int | float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _get(entry: Mapping, *keys: str) -> int | float:
    value: Any = entry
    for key in keys:
        if not isinstance(value, Mapping):
            return 0
        value = value.get(key)
    return _number(value)


_TOTAL_PATHS = (
    ("gpus", "count"), ("gpus", "memory"), ("vcpus", "count"), ("memory",), ("swap",),
    ("storage", "disks"), ("storage", "size"),
    ("network", "interfaces"), ("network", "txBandwidth"), ("network", "rxBandwidth"),
)


def _figures(e: Mapping) -> tuple:
    """The ten summed figures of one entry; 0 for any that is missing or not a number."""
    try:  # the shape we build: no per-field checks needed
        g, s, n = e["gpus"], e["storage"], e["network"]
        figures = (g["count"], g["memory"], e["vcpus"]["count"], e["memory"], e["swap"], s["disks"], s["size"],
                   n["interfaces"], n["txBandwidth"], n["rxBandwidth"])
        if all(type(v) is int for v in figures):
            return figures
    except (KeyError, TypeError):
        pass
    return tuple(_get(e, *path) for path in _TOTAL_PATHS)


def cluster_totals(entries: Iterable[Mapping]) -> dict:
    """Sums over node entries; tolerant of entries a pre-check policy reshaped."""
    sums = [0] * len(_TOTAL_PATHS)
    for e in entries:
        for i, value in enumerate(_figures(e)):
            sums[i] += value
    gpu_count, gpu_memory, vcpus, memory, swap, disks, size, interfaces, tx, rx = sums
    return {
        "gpus": {"count": gpu_count, "memory": gpu_memory},
        "vcpus": {"count": vcpus},
        "memory": memory,
        "swap": swap,
        "storage": {"disks": disks, "size": size},
        "network": {"interfaces": interfaces, "txBandwidth": tx, "rxBandwidth": rx},
    }


def _with_entries(document: Mapping, entries: list[dict]) -> dict:
    result = dict(document)
    nodes = dict(result.get("nodes") or {})
    nodes.pop("nodesData", None)
    nodes["nodeData"] = entries
    nodes["count"] = len(entries)
    result["nodes"] = nodes
    result.update(cluster_totals(entries))
    return result


def populate_document(config: Mapping, entries: Iterable[dict]) -> dict:
    """The populated document: the (validated, normalised) input plus nodes and totals.

    Unknown input fields are kept; the node list is replaced by `entries`.
    The document holds the entry dicts themselves (not copies, 5,000 deep
    copies cost a quarter of a second): treat them as frozen afterwards.
    """
    return _with_entries(copy.deepcopy(dict(config)), list(entries))


def document_node_ids(document: Mapping) -> list[str]:
    nodes = document.get("nodes") or {}
    return [e["id"] for e in nodes.get("nodeData") or [] if isinstance(e, Mapping) and isinstance(e.get("id"), str)]


def with_node(document: Mapping, entry: dict) -> dict:
    """The document with `entry` added at the end, or replacing the entry of the same id
    where that one stood (an updated node keeps its place), totals updated."""
    new_entry = copy.deepcopy(entry)
    entries: list = []
    placed = False
    for e in (document.get("nodes") or {}).get("nodeData") or []:
        if isinstance(e, Mapping) and e.get("id") == entry["id"]:
            if not placed:
                entries.append(new_entry)
                placed = True
        else:
            entries.append(e)
    if not placed:
        entries.append(new_entry)
    return _with_entries(document, entries)


def without_node(document: Mapping, node_id: str) -> dict:
    """The document without the node's entry, totals updated."""
    entries = [e for e in (document.get("nodes") or {}).get("nodeData") or []
               if not (isinstance(e, Mapping) and e.get("id") == node_id)]
    return _with_entries(document, entries)


# ---------------------------------------------------------------- one node, from Kubernetes


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX: dict[str, int | Decimal] = {
    "": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("16393308Ki", "8", "7500m", "1e9") as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        return Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2)])
    except InvalidOperation as e:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from e


@dataclass(frozen=True)
class KubeNodeReading:
    node_name: str
    entry: dict
    unmeasured: tuple[str, ...]  # fields written as 0 or not from an agent, with why
    has_node_id_label: bool


def kube_node_entry(node: Mapping) -> KubeNodeReading:
    """A node entry from a Node object (as JSON) when no agent data exists.

    Measured by Kubernetes: CPU and memory capacity. GPUs: from the
    `gpu.aios/info` annotation. `storage.size` is the kubelet's
    ephemeral-storage capacity (the filesystem it runs on), not the disks'
    total. Not measured at all, so 0: swap, storage.disks, network.
    """
    metadata = node.get("metadata") or {}
    name = metadata.get("name") or ""
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    capacity = (node.get("status") or {}).get("capacity") or {}
    notes: list[str] = []

    def capacity_value(key: str, scale: int) -> int:
        if key not in capacity:
            notes.append(f"{key}: no capacity reported by Kubernetes")
            return 0
        try:
            return int(parse_quantity(capacity[key]) / scale)
        except ValueError as e:
            notes.append(f"{key}: {e}")
            return 0

    vcpus = capacity_value("cpu", 1)
    memory = capacity_value("memory", MB)
    storage_size = capacity_value("ephemeral-storage", MB)
    gpus, gpu_note = _gpus_from_annotation(annotations.get(GPU_ANNOTATION))
    if gpu_note:
        notes.append(gpu_note)
    notes += [
        "swap: not measured (no agent)",
        "storage.disks: not measured (no agent); storage.size is the kubelet's ephemeral-storage capacity",
        "network: not measured (no agent)",
    ]
    node_id = labels.get(NODE_ID_LABEL) or name
    entry = {
        "id": node_id,
        "gpus": gpus,
        "vcpus": {"count": vcpus},
        "memory": memory,
        "swap": 0,
        "storage": {"disks": 0, "size": storage_size},
        "network": {"interfaces": 0, "txBandwidth": 0, "rxBandwidth": 0},
    }
    return KubeNodeReading(name, entry, tuple(notes), NODE_ID_LABEL in labels)


def _gpus_from_annotation(value: str | None) -> tuple[dict, str]:
    empty = _gpus_block([])
    if value is None:
        return empty, f"gpus: not known (no {GPU_ANNOTATION} annotation)"
    try:
        items = json.loads(value)
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("modelName"), str)
            and isinstance(i.get("memory"), (int, float)) for i in items
        ):
            raise ValueError("expected an array of {modelName, memory}")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        return empty, f"gpus: {GPU_ANNOTATION} annotation unreadable ({e})"
    block = _gpus_block(
        items,
        model=lambda g: g["modelName"],
        memory=lambda g: g["memory"],
        features=lambda g: [f for f in g.get("features") or [] if isinstance(f, str)],
    )
    note = ""
    if items and not block["features"]:
        note = "gpus.features: not measured (the annotation carries no features)"
    return block, note
