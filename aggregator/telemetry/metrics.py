"""The aggregator's Prometheus exposition: cluster figures, optionally every node's.

Served at `/metrics` by the aggregator's HTTP app (`metrics_router`) or on a
port of its own (`serve_aggregator_metrics`). A scrape reads the registry's
snapshot and the providers; it computes nothing expensive and never blocks
on a node.

Cluster series (labelled `cluster`):

- `aios_cluster_nodes{status}`: nodes per status (healthy/unhealthy/stale);
  `aios_cluster_node_status{node,status}` 0/1 per node and status, and
  `aios_cluster_node_last_seen_timestamp_seconds{node}`;
- `aios_cluster_gpus`, `aios_cluster_gpus_lost`, `aios_cluster_gpus_unhealthy`
  and `aios_cluster_gpu_problems{kind}` (GPUs with an open problem, in all
  and per problem class, judged by the one GPU health rule,
  `proto/health/gpu_rule.py`, with the registry's settings),
  `aios_cluster_gpu_memory_total_bytes`, `aios_cluster_gpu_memory_used_bytes`,
  `aios_cluster_gpu_utilization_ratio` (mean over GPUs with a reading; used
  memory and utilization only from nodes that are not stale);
- `aios_cluster_samples_received_total`, `aios_cluster_dropped_samples_total`:
  sums over the nodes the registry holds (a node leaving the registry takes
  its share away, which Prometheus' rate() reads as a counter reset);
- once a check ran: `aios_cluster_stability_check_success` 0/1 (0: the
  policy failed), `aios_cluster_stable` 0/1 (only with a verdict),
  `aios_cluster_stability_check_timestamp_seconds` and
  `aios_cluster_stability_verdict_age_seconds`;
- `aios_cluster_policy_errors_total`;
- `aios_cluster_nodes_unwritable` (nodes whose row the store could not write at
  the last commit, set aside) and `aios_cluster_nodes_clock_skewed` (agents
  whose clock runs ahead beyond the tolerance);
- from the ingest: `aios_cluster_ingest_refusals_total` (messages refused at
  the edge), `aios_cluster_node_id_conflicts_total` (two live agents found
  claiming one node id), `aios_cluster_store_rows_set_aside_total`.

With `per_node=True` (`--per-node-metrics`) every node's latest GPU and host
series follow, under the same names the agents serve (`aios_gpu_*`,
`aios_node_*`), for a Prometheus that cannot reach the nodes. Do not scrape
both the agents and a per-node aggregator into one query without telling
them apart by `job`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.telemetry.model import NODE_STATUSES, NodeState
from proto.health.gpu_rule import DEFAULT_RULE, HealthRule, ProblemKind, node_problems
from proto.telemetry.v1.exposition import (
    METRIC_PREFIX,
    MetricsServer,
    merge_families,
    node_metric_families,
    serve_registry,
)

__all__ = [
    "AggregatorCollector",
    "AggregatorMetricsProviders",
    "StabilityVerdict",
    "VerdictLike",
    "build_aggregator_registry",
    "cluster_metric_families",
    "metrics_router",
    "serve_aggregator_metrics",
]



class VerdictLike(Protocol):
    """What the metrics read of a stability verdict (the checker's `Verdict` fits)."""

    @property
    def is_stable(self) -> bool | None: ...  # None: the check itself failed

    @property
    def checked_at(self) -> float: ...  # unix seconds


@dataclass(frozen=True)
class StabilityVerdict:
    """The latest stability check's outcome."""

    is_stable: bool | None  # None: the check itself failed (policy error)
    checked_at: float  # unix seconds


@dataclass(frozen=True)
class AggregatorMetricsProviders:
    """Where a scrape reads from; each is called once per scrape and must not block."""

    nodes: Callable[[], Sequence[NodeState]]  # the registry's snapshot
    cluster_id: str = ""
    stability: Callable[[], VerdictLike | None] | None = None  # e.g. the checker's `latest`
    policy_errors: Callable[[], int] | None = None  # policy failures (exceptions, timeouts, bad results) so far
    ingest: Callable[[], Mapping[str, int]] | None = None  # IngestService.stats
    per_node: bool = False
    clock: Callable[[], float] = time.time
    health_rule: HealthRule = DEFAULT_RULE  # the registry's (`NodeRegistry.health_rule`)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{METRIC_PREFIX}_{name}", doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"{METRIC_PREFIX}_{name}", doc, labels=labels)


def cluster_metric_families(
    nodes: Sequence[NodeState],
    *,
    cluster_id: str,
    now: float,
    stability: VerdictLike | None = None,
    policy_errors: int | None = None,
    per_node: bool = False,
    ingest: Mapping[str, int] | None = None,
    health_rule: HealthRule = DEFAULT_RULE,
) -> list[Metric]:
    """Every series the aggregator serves, from one snapshot. Pure."""
    c = [cluster_id]
    families: list[Metric] = []

    info = _gauge("cluster_info", "The cluster this aggregator serves; the value is always 1.", ["cluster"])
    info.add_metric(c, 1)
    families.append(info)

    by_status = _gauge("cluster_nodes", "Nodes known to the aggregator, by status.", ["cluster", "status"])
    counts = {status: 0 for status in NODE_STATUSES}
    node_status = _gauge(
        "cluster_node_status", "1 for the node's current status, 0 for the others.", ["cluster", "node", "status"]
    )
    last_seen = _gauge(
        "cluster_node_last_seen_timestamp_seconds",
        "Unix time of the node's last message to the aggregator.",
        ["cluster", "node"],
    )
    for node in sorted(nodes, key=lambda n: n.node_id):
        counts[node.status] = counts.get(node.status, 0) + 1
        for status in NODE_STATUSES:
            node_status.add_metric([cluster_id, node.node_id, status], 1 if node.status == status else 0)
        last_seen.add_metric([cluster_id, node.node_id], node.last_seen)
    for status, count in counts.items():
        by_status.add_metric([cluster_id, status], count)
    families.append(by_status)
    if nodes:
        families += [node_status, last_seen]

    families += _gpu_figures(nodes, c)
    families += _gpu_health(nodes, c, now, health_rule)

    received = _counter("cluster_samples_received", "Samples received from the nodes now known.", ["cluster"])
    received.add_metric(c, sum(n.samples_received for n in nodes))
    dropped = _counter(
        "cluster_dropped_samples", "Samples the nodes now known reported dropped before sending.", ["cluster"]
    )
    dropped.add_metric(c, sum(n.dropped_samples for n in nodes))
    families += [received, dropped]

    if stability is not None:
        success = _gauge(
            "cluster_stability_check_success",
            "1 when the latest stability check ran and gave a verdict, 0 when the policy failed.",
            ["cluster"],
        )
        success.add_metric(c, 0 if stability.is_stable is None else 1)
        families.append(success)
        if stability.is_stable is not None:
            stable = _gauge("cluster_stable", "1 when the latest stability check found the cluster stable.", ["cluster"])
            stable.add_metric(c, 1 if stability.is_stable else 0)
            families.append(stable)
        checked = _gauge(
            "cluster_stability_check_timestamp_seconds", "Unix time of the latest stability check.", ["cluster"]
        )
        checked.add_metric(c, stability.checked_at)
        age = _gauge("cluster_stability_verdict_age_seconds", "Seconds since the latest stability check.", ["cluster"])
        age.add_metric(c, max(0.0, now - stability.checked_at))
        families += [checked, age]

    if policy_errors is not None:
        errors = _counter(
            "cluster_policy_errors", "Policy evaluations that failed (exception, timeout, crash, bad result).", ["cluster"]
        )
        errors.add_metric(c, policy_errors)
        families.append(errors)

    unwritable = _gauge("cluster_nodes_unwritable", "Nodes whose row the store could not write (set aside).", ["cluster"])
    unwritable.add_metric(c, sum(1 for n in nodes if n.unwritable))
    skewed = _gauge("cluster_nodes_clock_skewed", "Nodes whose agent clock runs ahead beyond the tolerance.", ["cluster"])
    skewed.add_metric(c, sum(1 for n in nodes if n.clock_skew_s))
    families += [unwritable, skewed]
    if ingest is not None:
        for key, name, doc in (
            ("refusals", "cluster_ingest_refusals", "Agent messages refused at the edge (type, range, size)."),
            ("node_id_conflicts", "cluster_node_id_conflicts", "Times two live agents were found claiming one node id."),
            ("rows_set_aside", "cluster_store_rows_set_aside", "Node rows the store could not write, set aside."),
        ):
            family = _counter(name, doc, ["cluster"])
            family.add_metric(c, ingest.get(key, 0))
            families.append(family)

    if per_node:
        families += merge_families(
            family
            for node in sorted(nodes, key=lambda n: n.node_id)
            for family in node_metric_families(node.inventory, node.latest, node=node.node_id)
        )
    return families


def _gpu_health(nodes: Sequence[NodeState], c: list[str], now: float, rule: HealthRule) -> list[Metric]:
    unhealthy: set[tuple[str, int]] = set()
    by_kind: dict[ProblemKind, set[tuple[str, int]]] = {kind: set() for kind in ProblemKind}
    for n in nodes:
        for problem in node_problems(n.inventory, n.latest, n.health_events, now, rule):
            if problem.gpu_index is not None:  # a node-level XID names no GPU
                gpu = (n.node_id, problem.gpu_index)
                unhealthy.add(gpu)
                by_kind[problem.kind].add(gpu)
    lost = _gauge("cluster_gpus_lost", "GPUs lost (stopped answering, missing from the sample).", ["cluster"])
    lost.add_metric(c, len(by_kind[ProblemKind.LOST]))
    unhealthy_family = _gauge("cluster_gpus_unhealthy", "GPUs with an open health problem.", ["cluster"])
    unhealthy_family.add_metric(c, len(unhealthy))
    problems = _gauge("cluster_gpu_problems", "GPUs with an open health problem, by problem class.", ["cluster", "kind"])
    for kind, gpus in by_kind.items():
        problems.add_metric([*c, kind.value], len(gpus))
    return [lost, unhealthy_family, problems]


def _gpu_figures(nodes: Sequence[NodeState], c: list[str]) -> list[Metric]:
    gpus_total = sum(len(n.inventory.gpus) for n in nodes)
    memory_total_bytes = sum(g.memory_bytes for n in nodes for g in n.inventory.gpus)
    live_samples = [g for n in nodes if n.status != "stale" and n.latest is not None for g in n.latest.gpus]
    used = [g.memory_used_bytes for g in live_samples if g.memory_used_bytes is not None]
    utilization = [g.utilization_gpu_pct for g in live_samples if g.utilization_gpu_pct is not None]

    total = _gauge("cluster_gpus", "GPUs in the nodes' inventories.", ["cluster"])
    total.add_metric(c, gpus_total)
    memory = _gauge("cluster_gpu_memory_total_bytes", "GPU memory in the nodes' inventories.", ["cluster"])
    memory.add_metric(c, memory_total_bytes)
    families: list[Metric] = [total, memory]
    if used:
        used_family = _gauge(
            "cluster_gpu_memory_used_bytes", "GPU memory in use on nodes that are not stale.", ["cluster"]
        )
        used_family.add_metric(c, sum(used))
        families.append(used_family)
    if utilization:
        util = _gauge(
            "cluster_gpu_utilization_ratio",
            "Mean GPU utilization (0..1) over the GPUs of nodes that are not stale.",
            ["cluster"],
        )
        util.add_metric(c, sum(utilization) / len(utilization) / 100.0)
        families.append(util)
    return families


class AggregatorCollector(Collector):
    """prometheus_client collector over the providers."""

    def __init__(self, providers: AggregatorMetricsProviders) -> None:
        self._providers = providers

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        p = self._providers
        return cluster_metric_families(
            p.nodes(),
            cluster_id=p.cluster_id,
            now=p.clock(),
            stability=p.stability() if p.stability else None,
            policy_errors=p.policy_errors() if p.policy_errors else None,
            per_node=p.per_node,
            ingest=p.ingest() if p.ingest else None,
            health_rule=p.health_rule,
        )


def build_aggregator_registry(
    providers: AggregatorMetricsProviders, *, process_metrics: bool = True
) -> CollectorRegistry:
    """A dedicated registry (never the global default) holding the aggregator's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AggregatorCollector(providers))
    if process_metrics:
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry


def metrics_router(registry: CollectorRegistry, *, path: str = "/metrics") -> APIRouter:
    """`GET /metrics` for the aggregator's FastAPI app (read-only, no token: Prometheus scrapes it)."""
    router = APIRouter()

    @router.get(path, include_in_schema=False)
    def metrics() -> Response:
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def serve_aggregator_metrics(
    port: int, providers: AggregatorMetricsProviders, *, addr: str = "0.0.0.0"
) -> MetricsServer:
    """Serve the aggregator's metrics on a port of its own (port 0 picks a free one)."""
    return serve_registry(port, build_aggregator_registry(providers), addr=addr)
