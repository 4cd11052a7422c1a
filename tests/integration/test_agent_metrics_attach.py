"""attach_agent_metrics: a daemon's observers feed the state, a real HTTP server serves it."""

import urllib.request
from dataclasses import replace
from types import SimpleNamespace

import pytest

from agent.metrics import attach_agent_metrics
from tests.metrics_fixtures.exposition import parse_exposition, value
from tests.metrics_fixtures.readings import INVENTORY, SAMPLE_1, SAMPLE_2

pytestmark = pytest.mark.integration


class _Daemon:
    """The daemon's hook points, nothing else."""

    def __init__(self):
        self.inventory_observers = []
        self.sample_observers = []


def _scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse_exposition(response.read().decode())


def test_observers_feed_what_scrapes_read():
    daemon = _Daemon()
    stats = SimpleNamespace(connected=True, connects=1, dropped_samples=0)
    server = attach_agent_metrics(daemon, port=0, addr="127.0.0.1", inventory=INVENTORY, stream_stats=lambda: stats)
    try:
        m = _scrape(server.port)
        assert value(m, "aios_node_gpus", node="node-a") == 2
        assert value(m, "aios_agent_stream_reconnects_total", node="node-a") == 0
        assert "aios_gpu_temperature_celsius" not in {name for name, _ in m}

        for observe in daemon.sample_observers:
            observe(SAMPLE_1)
            observe(SAMPLE_2)
        stats = SimpleNamespace(connected=False, connects=3, dropped_samples=4)
        m = _scrape(server.port)
        gpu0 = {"node": "node-a", "gpu": "0", "uuid": "GPU-aaaa", "model": "NVIDIA A100-SXM4-80GB"}
        assert value(m, "aios_gpu_temperature_celsius", **gpu0) == 71.0
        assert value(m, "aios_gpu_xid_errors_total", **gpu0, xid="79") == 2
        assert value(m, "aios_agent_stream_connected", node="node-a") == 0
        assert value(m, "aios_agent_stream_reconnects_total", node="node-a") == 2
        assert value(m, "aios_agent_dropped_samples_total", node="node-a") == 4

        renamed = replace(INVENTORY, node_id="node-z")
        for observe in daemon.inventory_observers:
            observe(renamed)
        assert value(_scrape(server.port), "aios_node_gpus", node="node-z") == 2
    finally:
        server.close()
