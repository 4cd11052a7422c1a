"""The agent's Prometheus exposition: `/metrics` on its own port.

A scrape never triggers a collection: the daemon hands every sample to an
`AgentMetricsState` (`attach_agent_metrics` hooks it to the daemon's
observers) and the scrape reads the latest one. The state also
accumulates what a single sample cannot hold: XID events per GPU and code,
and health events per kind, since the agent started.

Port: `AIOS_METRICS_PORT`, default 9402. 9100 is node_exporter's and 9400
dcgm-exporter's, both of which operators may run on the same nodes.

Series (all prefixed `aios_`, labelled `node`, GPU series also `gpu`, `uuid`,
`model`): the node's readings from `proto.telemetry.v1.exposition`, plus the
agent's own health:

- `aios_agent_collector_success{collector}` 0/1 and
  `aios_agent_collector_duration_seconds{collector}` for the latest sample;
- `aios_agent_last_sample_timestamp_seconds`;
- `aios_agent_health_events_total{kind}`;
- `aios_agent_dropped_samples_total`, `aios_agent_stream_connected` 0/1,
  `aios_agent_stream_reconnects_total` when a stream status provider is given.

Per-process GPU series are capped per node (`AIOS_METRICS_MAX_PROCESSES`,
default 64: the processes using the most GPU memory; see
`proto.telemetry.v1.exposition`).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proto.common.settings import number_setting
from proto.telemetry.v1.exposition import (
    MAX_PROCESS_SERIES,
    METRIC_PREFIX,
    MetricsServer,
    XidKey,
    node_metric_families,
    serve_registry,
)
from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

__all__ = [
    "DEFAULT_METRICS_PORT",
    "AgentCollector",
    "AgentMetricsProviders",
    "AgentMetricsState",
    "AgentReadings",
    "MetricsConfigError",
    "MetricsServer",
    "StreamStatus",
    "agent_metric_families",
    "attach_agent_metrics",
    "build_agent_registry",
    "max_process_series_from_env",
    "metrics_port_from_env",
    "serve_agent_metrics",
]

DEFAULT_METRICS_PORT = 9402


class MetricsConfigError(ValueError):
    """The metrics port setting is not usable."""


@dataclass(frozen=True)
class StreamStatus:
    """What the stream client knows about its link to the aggregator."""

    connected: bool
    reconnects_total: int = 0
    dropped_samples_total: int = 0

    @classmethod
    def from_stream_stats(cls, stats) -> StreamStatus:
        """From the stream client's stats (`connected`, `connects`, `dropped_samples`)."""
        return cls(
            connected=bool(stats.connected),
            reconnects_total=max(0, int(stats.connects) - 1),  # the first connect is not a reconnect
            dropped_samples_total=int(stats.dropped_samples),
        )


@dataclass(frozen=True)
class AgentReadings:
    """One consistent view for a scrape: the latest readings and the totals so far."""

    inventory: NodeInventory | None
    sample: NodeSample | None
    xid_counts: dict[XidKey, int]
    health_event_counts: dict[str, int]
    gpu_models: dict[str, str] = field(default_factory=dict)  # every GPU ever inventoried: {uuid: name}


class AgentMetricsState:
    """The latest inventory and sample, and counters fed by every sample's health events.

    The daemon calls `record` once per sample (from its sampling thread);
    scrapes call `readings` from the HTTP server's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inventory: NodeInventory | None = None
        self._sample: NodeSample | None = None
        self._xids: Counter[XidKey] = Counter()
        self._health: Counter[str] = Counter()
        self._models: dict[str, str] = {}

    def record(self, inventory: NodeInventory | None, sample: NodeSample) -> None:
        with self._lock:
            if inventory is not None:
                self._set_inventory(inventory)
            self._sample = sample
            for event in sample.health_events:
                self._count(event)

    def set_inventory(self, inventory: NodeInventory) -> None:
        with self._lock:
            self._set_inventory(inventory)

    def _set_inventory(self, inventory: NodeInventory) -> None:
        self._inventory = inventory
        self._models.update((gpu.uuid, gpu.name) for gpu in inventory.gpus)

    def observe_health(self, event: HealthEvent) -> None:
        """A health event delivered outside any sample (the daemon's `push_health`)."""
        with self._lock:
            self._count(event)

    def _count(self, event: HealthEvent) -> None:
        self._health[event.kind] += 1
        if event.kind == "xid" and event.xid is not None and event.gpu_index is not None:
            self._xids[XidKey(event.gpu_index, event.gpu_uuid, event.xid)] += 1

    def observe_sample(self, sample: NodeSample) -> None:
        """A sample observer for the daemon (the inventory comes from `set_inventory`)."""
        self.record(None, sample)

    def readings(self) -> AgentReadings:
        with self._lock:
            return AgentReadings(
                self._inventory, self._sample, dict(self._xids), dict(self._health), dict(self._models)
            )


@dataclass(frozen=True)
class AgentMetricsProviders:
    """Where a scrape reads from; each is called once per scrape and must not block."""

    readings: Callable[[], AgentReadings]
    node_id: Callable[[], str] | None = None  # defaults to the inventory's node id
    stream: Callable[[], StreamStatus] | None = None  # None: the agent runs without a stream
    max_process_series: int = MAX_PROCESS_SERIES  # per-process GPU series, at most (AIOS_METRICS_MAX_PROCESSES)


def agent_metric_families(
    readings: AgentReadings,
    stream: StreamStatus | None,
    *,
    node: str | None = None,
    max_process_series: int = MAX_PROCESS_SERIES,
) -> list[Metric]:
    """Every series the agent serves, from one view of its state. Pure."""
    if node is None:
        node = readings.inventory.node_id if readings.inventory is not None else ""
    families = node_metric_families(
        readings.inventory,
        readings.sample,
        node=node,
        xid_counts=readings.xid_counts,
        gpu_models=readings.gpu_models,
        max_process_series=max_process_series,
    )
    name = f"{METRIC_PREFIX}_agent"
    sample = readings.sample
    if sample is not None:
        success = GaugeMetricFamily(
            f"{name}_collector_success",
            "1 when the collector succeeded in the latest sample, else 0.",
            labels=["node", "collector"],
        )
        duration = GaugeMetricFamily(
            f"{name}_collector_duration_seconds",
            "How long the collector took in the latest sample.",
            labels=["node", "collector"],
        )
        for status in sample.collectors:
            success.add_metric([node, status.name], 1.0 if status.success else 0.0)
            duration.add_metric([node, status.name], status.duration_s)
        if sample.collectors:
            families += [success, duration]
        last = GaugeMetricFamily(
            f"{name}_last_sample_timestamp_seconds",
            "Unix time of the latest sample.",
            labels=["node"],
        )
        last.add_metric([node], sample.timestamp)
        families.append(last)
    events = CounterMetricFamily(
        f"{name}_health_events",
        "Health events seen since the agent started, by kind.",
        labels=["node", "kind"],
    )
    for kind, count in sorted(readings.health_event_counts.items()):
        events.add_metric([node, kind], count)
    if readings.health_event_counts:
        families.append(events)
    if stream is not None:
        families += _stream_families(name, node, stream)
    return families


def _stream_families(name: str, node: str, stream: StreamStatus) -> list[Metric]:
    connected = GaugeMetricFamily(
        f"{name}_stream_connected", "1 while the stream to the aggregator is open, else 0.", labels=["node"]
    )
    connected.add_metric([node], 1.0 if stream.connected else 0.0)
    reconnects = CounterMetricFamily(
        f"{name}_stream_reconnects", "Times the stream to the aggregator was opened again.", labels=["node"]
    )
    reconnects.add_metric([node], stream.reconnects_total)
    dropped = CounterMetricFamily(
        f"{name}_dropped_samples", "Samples dropped because the aggregator could not take them.", labels=["node"]
    )
    dropped.add_metric([node], stream.dropped_samples_total)
    return [connected, reconnects, dropped]


class AgentCollector(Collector):
    """prometheus_client collector: reads the providers, never the hardware."""

    def __init__(self, providers: AgentMetricsProviders) -> None:
        self._providers = providers

    def describe(self) -> list[Metric]:
        # Names depend on what the node has; an empty description keeps the
        # registry from calling collect() at registration.
        return []

    def collect(self) -> list[Metric]:
        readings = self._providers.readings()
        node = self._providers.node_id() if self._providers.node_id else None
        stream = self._providers.stream() if self._providers.stream else None
        return agent_metric_families(readings, stream, node=node, max_process_series=self._providers.max_process_series)


def build_agent_registry(providers: AgentMetricsProviders, *, process_metrics: bool = True) -> CollectorRegistry:
    """A dedicated registry (never the global default) holding the agent's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(providers))
    if process_metrics:
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry


def serve_agent_metrics(
    port: int,
    providers: AgentMetricsProviders,
    *,
    addr: str = "0.0.0.0",
    process_metrics: bool = True,
    routes: dict[str, Callable] | None = None,
) -> MetricsServer:
    """Serve the agent's metrics on `addr:port` (port 0 picks a free one);
    `routes` adds WSGI apps by path (the running agent's `/healthz`)."""
    registry = build_agent_registry(providers, process_metrics=process_metrics)
    return serve_registry(port, registry, addr=addr, routes=routes)


def attach_agent_metrics(
    daemon,
    *,
    port: int,
    inventory: NodeInventory | None = None,
    stream_stats: Callable[[], object] | None = None,
    addr: str = "0.0.0.0",
    routes: dict[str, Callable] | None = None,
    max_process_series: int | None = None,
) -> MetricsServer:
    """Serve the metrics of a running agent daemon: one call where the daemon is built.

    `daemon` has `inventory_observers` and `sample_observers` lists (the
    agent daemon's hook points); `stream_stats` is the stream client's
    `stats` method. Close the returned server on shutdown.
    Health events the daemon delivers outside samples (its `health_observers`,
    when it has them: XIDs pushed as they arrive) are counted too, once each.
    `routes`: extra WSGI apps by path on the same port (the agent's `/healthz`).
    `max_process_series`: the cap on per-process GPU series (default: $AIOS_METRICS_MAX_PROCESSES, else 64).
    """
    if max_process_series is None:
        max_process_series = max_process_series_from_env()
    state = AgentMetricsState()
    if inventory is not None:
        state.set_inventory(inventory)
    daemon.inventory_observers.append(state.set_inventory)
    daemon.sample_observers.append(state.observe_sample)
    health_observers = getattr(daemon, "health_observers", None)
    if health_observers is not None:
        health_observers.append(state.observe_health)
    stream = (lambda: StreamStatus.from_stream_stats(stream_stats())) if stream_stats is not None else None
    providers = AgentMetricsProviders(state.readings, stream=stream, max_process_series=max_process_series)
    return serve_agent_metrics(port, providers, addr=addr, routes=routes)


def max_process_series_from_env(environ: dict[str, str] | None = None) -> int:
    """`AIOS_METRICS_MAX_PROCESSES`: per-process GPU series at most (default 64; 0: none)."""
    env = os.environ if environ is None else environ
    return int(number_setting(env, "AIOS_METRICS_MAX_PROCESSES", MAX_PROCESS_SERIES, low=0, high=10_000, whole=True,
                              error=MetricsConfigError))


def metrics_port_from_env(environ: dict[str, str] | None = None) -> int:
    """`AIOS_METRICS_PORT`, or the default; 0 disables nothing here (it means any free port)."""
    env = os.environ if environ is None else environ
    return int(number_setting(env, "AIOS_METRICS_PORT", DEFAULT_METRICS_PORT, low=0, high=65535, whole=True,
                              error=MetricsConfigError))
