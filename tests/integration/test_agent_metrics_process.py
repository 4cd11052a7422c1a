"""Real agent processes under the fake NVML; a real Prometheus scrapes them and the aggregator.

Two paths from the fake library to PromQL, scraped by one Prometheus:
- `aios-agent metrics` (the exporter alone) serving /metrics itself;
- `aios-agent run` streaming over gRPC to a real aggregator (registry,
  ingest, SQLite), whose metrics server serves the cluster figures and, with
  per-node series on, the node's GPUs.
The values Prometheus answers are the ones the fake library was given; live
edits (an XID, a lost GPU) reach Prometheus too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from aggregator.service import Aggregator, ServeConfig
from aggregator.telemetry.metrics import AggregatorMetricsProviders, serve_aggregator_metrics
from tests.fakenvml.presets import a100_80gb, h100_sxm
from tests.metrics_fixtures.servers import PrometheusServer, prometheus_binary
from tests.support.net import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "metrics-test-token"


def _wait_for_metrics(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if b"aios_gpu_temperature_celsius" in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no GPU series at {url} after {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()


def _agent(args: list[str], env: dict[str, str], node_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO), "NODE_ID": node_id, "NODE_NAME": node_id,
             "AIOS_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def gpus(fake_nvml):
    gpus = [a100_80gb(0), h100_sxm(1)]
    fake_nvml.configure(gpus=gpus, driver_version="550.54.15", cuda_driver_version="12.4")
    fake_nvml.set(0, temperature_c=67, util_gpu_pct=93, power_draw_w=250.5, memory_used_mb=40_960,
                  clock_event_reasons=0x4, ecc_corrected_aggregate=12, pcie_replay=9)
    fake_nvml.set(1, temperature_c=48, util_gpu_pct=10, clock_sm_mhz=1980)
    return gpus


@pytest.fixture
def exporter(fake_nvml, gpus):
    """`aios-agent metrics` on a port of its own."""
    port = free_port()
    proc = _agent(["metrics", "--port", str(port), "--addr", "127.0.0.1", "--interval", "0.2"], fake_nvml.env, "exporter-node")
    try:
        _wait_for_metrics(f"http://127.0.0.1:{port}/metrics", proc)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def aggregator(tmp_path):
    """A real aggregator (gRPC ingest, registry, SQLite) on its own loop, and its metrics server."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    agg = Aggregator(ServeConfig(db_path=tmp_path / "aggregator.db", tokens=(TOKEN,), grpc_port=0, http_port=None,
                                 host="127.0.0.1", cluster_id="cluster-9"))
    asyncio.run_coroutine_threadsafe(agg.start(), loop).result(timeout=20)
    metrics = serve_aggregator_metrics(
        0, AggregatorMetricsProviders(nodes=agg.registry.snapshot, cluster_id="cluster-9", per_node=True), addr="127.0.0.1"
    )
    try:
        yield f"127.0.0.1:{agg.grpc.port}", f"127.0.0.1:{metrics.port}"
    finally:
        metrics.close()
        asyncio.run_coroutine_threadsafe(agg.stop(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def streaming_agent(fake_nvml, gpus, aggregator):
    """`aios-agent run` streaming to the aggregator."""
    grpc_addr, _ = aggregator
    proc = _agent(["run", "--aggregator", grpc_addr, "--interval", "0.2", "--cluster-id", "cluster-9"],
                  fake_nvml.env, "streaming-node")
    yield proc
    _stop(proc)


def test_prometheus_reads_what_the_fake_nvml_was_given(fake_nvml, gpus, exporter, aggregator, streaming_agent, tmp_path):
    _, aggregator_metrics = aggregator
    prom = PrometheusServer(
        tmp_path, {"aios-agent": [exporter], "aios-aggregator": [aggregator_metrics]}, binary=prometheus_binary()
    )
    try:
        # Straight from the agent ...
        prom.expect('aios_gpu_temperature_celsius{job="aios-agent"}', {gpus[0].uuid: 67.0, gpus[1].uuid: 48.0}, by="uuid")
        prom.expect('aios_gpu_utilization_ratio{job="aios-agent"} * 100', {"0": 93.0, "1": 10.0}, by="gpu")
        prom.expect('aios_gpu_power_draw_watts{gpu="0", job="aios-agent"}', {"NVIDIA A100-SXM4-80GB": 250.5}, by="model")
        prom.expect('aios_gpu_memory_used_bytes{gpu="0", job="aios-agent"} / 2^20', {"exporter-node": 40_960.0}, by="node")
        prom.expect('aios_gpu_sm_clock_hertz{gpu="1", job="aios-agent"} / 1e6', {"NVIDIA H100 80GB HBM3": 1980.0}, by="model")
        prom.expect('aios_gpu_throttle_reason{gpu="0", job="aios-agent"} == 1', {"sw_power_cap": 1.0}, by="reason")
        prom.expect('aios_gpu_ecc_aggregate_errors_total{gpu="0", type="corrected", job="aios-agent"}', {"0": 12.0}, by="gpu")
        prom.expect('aios_gpu_pcie_replays_total{gpu="0", job="aios-agent"}', {"0": 9.0}, by="gpu")
        prom.expect('aios_node_gpus{job="aios-agent"}', {"exporter-node": 2.0}, by="node")
        # attribution: no kubelet socket here, which is no failure (it says why in aios_node_gpu_attribution_up)
        prom.expect(
            'aios_agent_collector_success{job="aios-agent"}', {"gpu": 1.0, "host": 1.0, "attribution": 1.0}, by="collector"
        )
        prom.expect('aios_node_gpu_attribution_up{job="aios-agent"}', {"exporter-node": 0.0}, by="node")

        # ... and through the aggregator's registry.
        prom.expect('aios_cluster_nodes{job="aios-aggregator"}', {"healthy": 1.0, "unhealthy": 0.0, "stale": 0.0}, by="status")
        prom.expect('aios_cluster_gpus{job="aios-aggregator"}', {"cluster-9": 2.0}, by="cluster")
        prom.expect(
            'aios_cluster_gpu_memory_total_bytes{job="aios-aggregator"} / 2^20', {"cluster-9": 81_920.0 + 81_559.0}, by="cluster"
        )
        prom.expect('aios_cluster_gpu_utilization_ratio{job="aios-aggregator"}', {"cluster-9": 0.515}, by="cluster")
        prom.expect('clamp_max(aios_cluster_samples_received_total{job="aios-aggregator"}, 1)', {"cluster-9": 1.0}, by="cluster")
        prom.expect('aios_gpu_temperature_celsius{job="aios-aggregator"}', {"0": 67.0, "1": 48.0}, by="gpu")

        # Live: an XID on GPU 1, then GPU 0 falls off the bus.
        fake_nvml.inject_xid(1, 79)
        prom.expect('aios_gpu_xid_errors_total{xid="79", job="aios-agent"}', {"1": 1.0}, by="gpu")
        fake_nvml.lose_gpu(0)
        prom.expect('aios_gpu_lost{job="aios-agent"}', {"0": 1.0, "1": 0.0}, by="gpu")
    finally:
        prom.close()


def _scrape_value(address: str, line_prefix: str) -> float | None:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_a_lost_gpu_reaches_the_aggregators_figures(fake_nvml, gpus, aggregator, streaming_agent):
    _, metrics = aggregator
    lost_series = 'aios_cluster_gpus_lost{cluster="cluster-9"}'
    deadline = time.monotonic() + 15
    while _scrape_value(metrics, 'aios_cluster_gpus{cluster="cluster-9"}') != 2.0:
        assert time.monotonic() < deadline, "the streaming agent never reached the aggregator"
        time.sleep(0.1)
    fake_nvml.lose_gpu(0)
    deadline = time.monotonic() + 15  # samples come every 0.2 s; a loaded machine may lag
    while _scrape_value(metrics, lost_series) != 1.0:
        assert time.monotonic() < deadline, "the lost GPU never showed in aios_cluster_gpus_lost"
        time.sleep(0.1)
