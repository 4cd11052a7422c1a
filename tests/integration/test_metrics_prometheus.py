"""A real Prometheus scrapes the agent's and the aggregator's /metrics and answers PromQL."""

import pytest
from fastapi import FastAPI

from agent.metrics import AgentMetricsProviders, AgentMetricsState, StreamStatus, serve_agent_metrics
from aggregator.metrics import (
    AggregatorMetricsProviders,
    StabilityVerdict,
    build_aggregator_registry,
    metrics_router,
    serve_aggregator_metrics,
)
from tests.metrics_fixtures.readings import INVENTORY, SAMPLE_1, SAMPLE_2, node_states
from tests.metrics_fixtures.servers import PrometheusServer, UvicornThread, prometheus_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def agent_endpoint():
    state = AgentMetricsState()
    state.record(INVENTORY, SAMPLE_1)
    state.record(None, SAMPLE_2)
    server = serve_agent_metrics(
        0, AgentMetricsProviders(state.readings, stream=lambda: StreamStatus(True, 2, 5)), addr="127.0.0.1"
    )
    yield f"127.0.0.1:{server.port}"
    server.close()


def _aggregator_providers(**kw):
    return AggregatorMetricsProviders(
        nodes=node_states,
        cluster_id="cluster-7",
        stability=lambda: StabilityVerdict(True, 1_790_000_000.0),
        policy_errors=lambda: 4,
        **kw,
    )


@pytest.fixture
def aggregator_endpoint():
    """The aggregator's FastAPI app with the metrics router, served by uvicorn."""
    app = FastAPI()
    app.include_router(metrics_router(build_aggregator_registry(_aggregator_providers(per_node=True))))
    server = UvicornThread(app)
    yield f"127.0.0.1:{server.port}"
    server.close()


@pytest.fixture
def prometheus(tmp_path):
    binary = prometheus_binary()
    started = []

    def start(jobs):
        server = PrometheusServer(tmp_path, jobs, binary=binary)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_prometheus_scrapes_agent_and_aggregator(prometheus, agent_endpoint, aggregator_endpoint):
    prom = prometheus({"aios-agent": [agent_endpoint], "aios-aggregator": [aggregator_endpoint]})

    prom.expect("up", {"aios-agent": 1.0, "aios-aggregator": 1.0}, by="job")

    # The agent's GPU readings, as the literal sample gave them.
    prom.expect('aios_gpu_temperature_celsius{job="aios-agent"}', {"GPU-aaaa": 71.0}, by="uuid")
    prom.expect('aios_gpu_utilization_ratio{job="aios-agent"} * 100', {"0": 87.0}, by="gpu")
    prom.expect('aios_gpu_memory_used_bytes{job="aios-agent"} / 2^20', {"0": 61_440.0}, by="gpu")
    prom.expect('aios_gpu_xid_errors_total{job="aios-agent"}', {"48": 1.0, "79": 2.0}, by="xid")
    prom.expect('aios_gpu_lost{job="aios-agent"}', {"0": 0.0, "1": 1.0}, by="gpu")
    prom.expect('aios_gpu_throttle_reason{job="aios-agent"} == 1', {"sw_power_cap": 1.0}, by="reason")
    prom.expect('aios_agent_stream_reconnects_total{job="aios-agent"}', {"node-a": 2.0}, by="node")

    # The aggregator's cluster figures.
    prom.expect("aios_cluster_nodes", {"healthy": 1.0, "unhealthy": 1.0, "stale": 1.0}, by="status")
    prom.expect("aios_cluster_gpus", {"cluster-7": 3.0}, by="cluster")
    prom.expect("aios_cluster_stable", {"cluster-7": 1.0}, by="cluster")
    prom.expect("aios_cluster_policy_errors_total", {"cluster-7": 4.0}, by="cluster")
    # ... and every node's series through it.
    prom.expect('aios_gpu_temperature_celsius{job="aios-aggregator"}', {
        "node-a": 71.0,
        "node-b": 55.0,
    }, by="node")


def test_standalone_aggregator_server(prometheus):
    server = serve_aggregator_metrics(0, _aggregator_providers(), addr="127.0.0.1")
    try:
        prom = prometheus({"aios-aggregator": [f"127.0.0.1:{server.port}"]})
        prom.expect("sum(aios_cluster_samples_received_total)", {"": 205.0}, by="")
        prom.expect("aios_cluster_gpu_utilization_ratio", {"cluster-7": 0.66}, by="cluster")
    finally:
        server.close()
