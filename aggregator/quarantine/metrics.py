"""The quarantine's Prometheus series (served at the aggregator's `/metrics`, registered beside its collector).

- `aios_cluster_quarantine_nodes{cluster,state}`: nodes per quarantine state (every state, 0 included);
- `aios_cluster_quarantine_node{cluster,node,state,reason}`: 1 per node the quarantine has something to say about;
- `aios_cluster_quarantine_actions_total{cluster,action,outcome}`: decisions since the aggregator started;
- `aios_cluster_quarantine_budget{cluster}` and `aios_cluster_quarantine_mode{cluster,mode}` (always 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.quarantine.store import QuarantineRecord
from proto.telemetry.v1.exposition import METRIC_PREFIX

__all__ = ["STATES", "QuarantineCollector", "quarantine_metric_families"]

STATES = ("quarantined", "would_quarantine", "held", "over_budget", "refused", "failed")


def quarantine_metric_families(
    view: Mapping[str, QuarantineRecord], counts: Mapping[tuple[str, str], int], *, cluster_id: str, mode: str,
    budget: int,
) -> list[Metric]:
    """Pure: the series from the controller's view and counters."""
    c = [cluster_id]
    per_state = GaugeMetricFamily(f"{METRIC_PREFIX}_cluster_quarantine_nodes", "Nodes per quarantine state.",
                                  labels=["cluster", "state"])
    for state in STATES:
        per_state.add_metric([*c, state], sum(1 for r in view.values() if r.state == state))
    nodes = GaugeMetricFamily(f"{METRIC_PREFIX}_cluster_quarantine_node",
                              "1 for each node the quarantine has something to say about.",
                              labels=["cluster", "node", "state", "reason"])
    for node_id, record in sorted(view.items()):
        nodes.add_metric([*c, node_id, record.state, record.reason], 1)
    actions = CounterMetricFamily(f"{METRIC_PREFIX}_cluster_quarantine_actions",
                                  "Quarantine decisions since the aggregator started, by action and outcome.",
                                  labels=["cluster", "action", "outcome"])
    for (action, outcome), n in sorted(counts.items()):
        actions.add_metric([*c, action, outcome], n)
    budget_family = GaugeMetricFamily(f"{METRIC_PREFIX}_cluster_quarantine_budget",
                                      "Nodes that may be quarantined at once now.", labels=["cluster"])
    budget_family.add_metric(c, budget)
    mode_family = GaugeMetricFamily(f"{METRIC_PREFIX}_cluster_quarantine_mode", "The quarantine mode (always 1).",
                                    labels=["cluster", "mode"])
    mode_family.add_metric([*c, mode], 1)
    return [per_state, nodes, actions, budget_family, mode_family]


class QuarantineCollector(Collector):
    def __init__(self, controller, *, cluster_id: str, cluster_size: Callable[[], int]) -> None:
        self._controller = controller
        self._cluster_id = cluster_id
        self._cluster_size = cluster_size

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        config = self._controller.config
        return quarantine_metric_families(
            self._controller.view(), self._controller.counts(), cluster_id=self._cluster_id, mode=config.mode,
            budget=config.budget(self._cluster_size()),
        )
