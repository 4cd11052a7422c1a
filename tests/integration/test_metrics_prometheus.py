"""A real Prometheus scrapes the agent's and the aggregator's /metrics and answers PromQL.

One Prometheus for the module: it takes about 5 s to start scraping new
targets (its discovery manager batches updates), so every endpoint is
started first and scraped by the same server.
"""

import time

import pytest
from fastapi import FastAPI

from agent.metrics import AgentMetricsProviders, AgentMetricsState, StreamStatus, serve_agent_metrics
from aggregator.telemetry.metrics import (
    AggregatorMetricsProviders,
    StabilityVerdict,
    build_aggregator_registry,
    metrics_router,
    serve_aggregator_metrics,
)
from tests.metrics_fixtures.dashboard import expressions, load_dashboard
from tests.metrics_fixtures.quarantine import quarantine_collector
from tests.metrics_fixtures.readings import (
    ATTRIBUTED_INVENTORY,
    ATTRIBUTED_SAMPLE,
    GIB,
    INVENTORY,
    SAMPLE_1,
    SAMPLE_2,
    node_states,
)
from tests.metrics_fixtures.servers import PrometheusServer, prometheus_binary
from tests.support.served_app import ServedApp

pytestmark = pytest.mark.integration


def _aggregator_providers(**kw):
    return AggregatorMetricsProviders(
        nodes=node_states,
        cluster_id="cluster-7",
        stability=lambda: StabilityVerdict(True, 1_790_000_000.0),
        policy_errors=lambda: 4,
        **kw,
    )


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    binary = prometheus_binary()
    state = AgentMetricsState()
    state.record(INVENTORY, SAMPLE_1)
    state.record(None, SAMPLE_2)
    agent = serve_agent_metrics(
        0, AgentMetricsProviders(state.readings, stream=lambda: StreamStatus(True, 2, 5)), addr="127.0.0.1"
    )
    pods_state = AgentMetricsState()  # a second node, whose GPUs carry pods
    pods_state.record(ATTRIBUTED_INVENTORY, ATTRIBUTED_SAMPLE)
    pods_agent = serve_agent_metrics(0, AgentMetricsProviders(pods_state.readings), addr="127.0.0.1")
    # The aggregator's FastAPI app with the metrics router, served by uvicorn ...
    app = FastAPI()
    registry = build_aggregator_registry(_aggregator_providers(per_node=True))
    registry.register(quarantine_collector("cluster-7"))  # served beside it by `serve` (aggregator/service.py)
    app.include_router(metrics_router(registry))
    aggregator_app = ServedApp(app)
    # ... and the standalone server, without per-node series.
    standalone = serve_aggregator_metrics(0, _aggregator_providers(), addr="127.0.0.1")
    server = None
    try:
        server = PrometheusServer(
            tmp_path_factory.mktemp("prometheus"),
            {
                "aios-agent": [f"127.0.0.1:{agent.port}", f"127.0.0.1:{pods_agent.port}"],
                "aios-aggregator": [f"127.0.0.1:{aggregator_app.port}"],
                "aios-aggregator-standalone": [f"127.0.0.1:{standalone.port}"],
            },
            binary=binary,
        )
        yield server
    finally:
        if server is not None:
            server.close()
        standalone.close()
        aggregator_app.close()
        agent.close()
        pods_agent.close()


def test_every_endpoint_is_up(prom):
    prom.expect("sum by (job) (up)", {"aios-agent": 2.0, "aios-aggregator": 1.0, "aios-aggregator-standalone": 1.0}, by="job")


def test_agent_readings_reach_prometheus(prom):
    prom.expect('aios_gpu_temperature_celsius{job="aios-agent", node="node-a"}', {"GPU-aaaa": 71.0}, by="uuid")
    prom.expect('aios_gpu_utilization_ratio{job="aios-agent", node="node-a"} * 100', {"0": 87.0}, by="gpu")
    prom.expect('aios_gpu_memory_used_bytes{job="aios-agent", node="node-a"} / 2^20', {"0": 61_440.0}, by="gpu")
    prom.expect('aios_gpu_xid_errors_total{job="aios-agent"}', {"48": 1.0, "79": 2.0}, by="xid")
    prom.expect('aios_gpu_lost{job="aios-agent", node="node-a"}', {"0": 0.0, "1": 1.0}, by="gpu")
    prom.expect('aios_gpu_throttle_reason{job="aios-agent"} == 1', {"sw_power_cap": 1.0}, by="reason")
    prom.expect('aios_node_load1{job="aios-agent"}', {"node-a": 4.25, "node-d": 4.25}, by="node")
    prom.expect('aios_agent_stream_reconnects_total{job="aios-agent"}', {"node-a": 2.0}, by="node")  # node-d: no stream
    prom.expect('aios_agent_collector_success{job="aios-agent", node="node-a"}', {"gpu": 1.0, "host": 1.0}, by="collector")


def test_pods_on_gpus_reach_prometheus_by_the_labels_users_query(prom):
    # the names dcgm-exporter users query by: namespace, pod, container on the GPU's own series
    prom.expect('aios_gpu_utilization_ratio{namespace="ml", pod="train-0", container="trainer"}', {"0": 0.93}, by="gpu")
    prom.expect('aios_gpu_pod_info{node="node-d"}', {"train-0": 1.0, "infer-0": 1.0, "infer-1": 1.0}, by="pod")
    prom.expect('sum by (pod) (aios_gpu_process_memory_used_bytes{pod!=""}) / 2^30',
                {"train-0": 22.0, "infer-0": 8.0, "infer-1": 4.0}, by="pod")  # fmt: skip
    prom.expect('aios_mig_memory_used_bytes / aios_mig_memory_total_bytes', {"3g.40gb": 0.2, "1g.10gb": 0.4}, by="profile")
    assert GIB == 2**30


def test_aggregator_figures_reach_prometheus(prom):
    prom.expect('aios_cluster_nodes{job="aios-aggregator"}', {"healthy": 1.0, "unhealthy": 1.0, "stale": 1.0}, by="status")
    prom.expect('aios_cluster_gpus{job="aios-aggregator"}', {"cluster-7": 3.0}, by="cluster")
    prom.expect('aios_cluster_stable{job="aios-aggregator"}', {"cluster-7": 1.0}, by="cluster")
    prom.expect('aios_cluster_policy_errors_total{job="aios-aggregator"}', {"cluster-7": 4.0}, by="cluster")
    prom.expect('aios_cluster_samples_received_total{job="aios-aggregator-standalone"}', {"cluster-7": 205.0}, by="cluster")
    prom.expect('aios_cluster_gpu_utilization_ratio{job="aios-aggregator-standalone"}', {"cluster-7": 0.66}, by="cluster")


def test_per_node_series_only_where_asked(prom):
    prom.expect('aios_gpu_temperature_celsius{job="aios-aggregator"}', {"node-a": 71.0, "node-b": 55.0}, by="node")
    # Only the per-node aggregator carries GPU and host series.
    prom.expect(
        'clamp_max(count by (job) ({__name__=~"aios_(gpu|node)_.+", job=~"aios-aggregator.*"}), 1)',
        {"aios-aggregator": 1.0},
        by="job",
    )


# Panels whose query is empty while nothing is wrong: no collector failed, and
# the XID counters have not moved since Prometheus first saw them.
QUIET_WHEN_HEALTHY = {"Collector failures", "XID errors by GPU and code", "Nodes without attribution"}


def test_every_dashboard_query_answers(prom):
    prom.expect('min(aios_agent_collector_success{job="aios-agent"})', {"": 1.0}, by="")
    # rate() and increase() need two scrapes of a series; targets are scraped
    # at different offsets, so poll the whole dashboard until it fills in.
    deadline = time.monotonic() + 15
    while True:
        empty = []
        for title, expr in expressions(load_dashboard()):
            result = prom.query(expr)  # raises on a query Prometheus refuses
            if not result and title not in QUIET_WHEN_HEALTHY:
                empty.append((title, expr))
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not empty, f"dashboard queries with no data: {empty}"
