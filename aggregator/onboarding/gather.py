"""Combine what the agents measured with what Kubernetes knows: pure.

The agents' numbers win. Kubernetes adds the Nodes no agent reported (with
what it cannot know named as not measured) and tells which Nodes lack the
`nodeID` label, an onboarding prerequisite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aggregator.onboarding.document import kube_node_entry, node_entry, unmeasured_fields
from aggregator.onboarding.sources import MeasuredNode

__all__ = ["GatheredNodes", "gather_nodes"]


@dataclass
class GatheredNodes:
    entries: list[dict]
    warnings: list[str] = field(default_factory=list)
    measured_ids: list[str] = field(default_factory=list)  # nodes whose data came from an agent
    unmeasured_ids: list[str] = field(default_factory=list)  # nodes read from Kubernetes only


def gather_nodes(measured: Iterable[MeasuredNode] | None, kube_nodes: Iterable[dict] | None) -> GatheredNodes:
    """Entries sorted by id. `None` for a source means it could not be read."""
    result = GatheredNodes(entries=[])
    by_id: dict[str, dict] = {}
    for node in measured or ():
        entry = node_entry(node.inventory, node.latest)
        by_id[entry["id"]] = entry
        result.measured_ids.append(entry["id"])
        for note in unmeasured_fields(node.inventory, node.latest):
            result.warnings.append(f"node {entry['id']}: {note}")

    if kube_nodes is not None:
        unlabelled = []
        for kube_node in kube_nodes:
            reading = kube_node_entry(kube_node)
            if not reading.has_node_id_label:
                unlabelled.append(reading.node_name)
            if reading.entry["id"] in by_id:
                continue
            by_id[reading.entry["id"]] = reading.entry
            result.unmeasured_ids.append(reading.entry["id"])
            result.warnings.append(
                f"node {reading.entry['id']} (Node {reading.node_name}): no agent data, read from Kubernetes; "
                + "; ".join(reading.unmeasured)
            )
        if unlabelled:
            result.warnings.append(
                "Nodes without the nodeID label (an onboarding prerequisite; their Node name is used as id): "
                + ", ".join(sorted(unlabelled))
            )
    result.entries = [by_id[i] for i in sorted(by_id)]
    result.measured_ids.sort()
    result.unmeasured_ids.sort()
    return result
