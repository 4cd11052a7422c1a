"""The quarantine's series as the aggregator serves them beside its own collector (literal state)."""

from __future__ import annotations

from aggregator.quarantine.config import QuarantineConfig
from aggregator.quarantine.metrics import QuarantineCollector
from aggregator.quarantine.store import QuarantineRecord


class _Controller:
    """What the collector reads of a controller: one node quarantined, one over budget."""

    config = QuarantineConfig(mode="taint")

    def view(self):
        return {
            "n1": QuarantineRecord("n1", "quarantined", 1.0, reason="GpuLost"),
            "n2": QuarantineRecord("n2", "over_budget", 1.0, reason="XidNeedsGpuReset"),
        }

    def counts(self):
        return {("quarantine", "applied"): 1, ("over_budget", "reported"): 1}


def quarantine_collector(cluster_id: str = "c") -> QuarantineCollector:
    return QuarantineCollector(_Controller(), cluster_id=cluster_id, cluster_size=lambda: 4)
