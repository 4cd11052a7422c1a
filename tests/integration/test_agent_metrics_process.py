"""A real agent process under the fake NVML serves /metrics; a real Prometheus scrapes it.

The values Prometheus answers are the ones the fake library was given, read
through the real pynvml, the GPU collector, the agent's state and its HTTP
server; live edits (an XID, a lost GPU) reach Prometheus too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fakenvml.presets import a100_80gb, h100_sxm
from tests.metrics_fixtures.servers import PrometheusServer, free_port, prometheus_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _wait_for_metrics(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                text = response.read().decode()
            if "aios_gpu_temperature_celsius" in text:
                return text
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no GPU series at {url} after {timeout}s")


@pytest.fixture
def agent_process(fake_nvml):
    gpus = [a100_80gb(0), h100_sxm(1)]
    fake_nvml.configure(gpus=gpus, driver_version="550.54.15", cuda_driver_version="12.4")
    fake_nvml.set(0, temperature_c=67, util_gpu_pct=93, power_draw_w=250.5, memory_used_mb=40_960,
                  clock_event_reasons=0x4, ecc_corrected_aggregate=12, pcie_replay=9)
    fake_nvml.set(1, temperature_c=48, util_gpu_pct=10, clock_sm_mhz=1980)
    port = free_port()
    env = {**os.environ, **fake_nvml.env, "PYTHONPATH": str(REPO), "NODE_ID": "fake-node-1", "NODE_NAME": "fake-node-1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "metrics", "--port", str(port), "--addr", "127.0.0.1", "--interval", "0.2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_metrics(f"http://127.0.0.1:{port}/metrics", proc)
        yield port, gpus
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_prometheus_reads_what_the_fake_nvml_was_given(agent_process, fake_nvml, tmp_path):
    port, gpus = agent_process
    prom = PrometheusServer(tmp_path, {"aios-agent": [f"127.0.0.1:{port}"]}, binary=prometheus_binary())
    try:
        prom.expect("aios_gpu_temperature_celsius", {gpus[0].uuid: 67.0, gpus[1].uuid: 48.0}, by="uuid")
        prom.expect("aios_gpu_utilization_ratio * 100", {"0": 93.0, "1": 10.0}, by="gpu")
        prom.expect('aios_gpu_power_draw_watts{gpu="0"}', {"NVIDIA A100-SXM4-80GB": 250.5}, by="model")
        prom.expect('aios_gpu_memory_used_bytes{gpu="0"} / 2^20', {"fake-node-1": 40_960.0}, by="node")
        prom.expect('aios_gpu_sm_clock_hertz{gpu="1"} / 1e6', {"NVIDIA H100 80GB HBM3": 1980.0}, by="model")
        prom.expect('aios_gpu_throttle_reason{gpu="0"} == 1', {"sw_power_cap": 1.0}, by="reason")
        prom.expect('aios_gpu_ecc_aggregate_errors_total{gpu="0", type="corrected"}', {"0": 12.0}, by="gpu")
        prom.expect('aios_gpu_pcie_replays_total{gpu="0"}', {"0": 9.0}, by="gpu")
        prom.expect("aios_node_gpus", {"fake-node-1": 2.0}, by="node")
        prom.expect('aios_agent_collector_success', {"gpu": 1.0, "host": 1.0}, by="collector")

        # Live: an XID on GPU 1, then GPU 0 falls off the bus.
        fake_nvml.inject_xid(1, 79)
        prom.expect('aios_gpu_xid_errors_total{xid="79"}', {"1": 1.0}, by="gpu")
        fake_nvml.lose_gpu(0)
        prom.expect("aios_gpu_lost", {"0": 1.0, "1": 0.0}, by="gpu")
    finally:
        prom.close()
