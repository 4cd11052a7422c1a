"""`aios-agent run`, started as the DaemonSet starts it (no --log-level): one INFO line says what it found."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from tests.fakenvml.presets import a100_80gb
from tests.support.telemetry import ROOT, AggregatorThread, base_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_a_healthy_start_logs_one_line_naming_gpus_aggregator_annotator_and_port(tmp_path, fake_nvml):
    fake_nvml.configure(gpus=[a100_80gb(0), a100_80gb(1)])
    aggregator = AggregatorThread(tmp_path)
    env = base_env(NODE_ID="node-s", NODE_NAME="node-s-name", AIOS_METRICS_PORT="0",
                   AIOS_AGGREGATOR_ADDR=aggregator.address, **fake_nvml.env)
    env.pop("AIOS_LOG_LEVEL", None)
    log_path = tmp_path / "agent.log"
    with open(log_path, "w") as log:
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--no-annotate", "--interval", "5"],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        line = wait_for(lambda: next((x for x in log_path.read_text().splitlines() if " on node " in x), None),
                        timeout_s=60, what="the start line")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        aggregator.close()
    assert " INFO " in line
    summary = line.split(": ", 1)[1]  # after "<time> INFO agent.commands.run"
    assert re.fullmatch(
        r"agent \S+ on node node-s-name \(id node-s, from NODE_ID\): "
        r"2 GPU\(s\) \(2x NVIDIA A100-SXM4-80GB; driver 550\.54\.15\), \d+ vCPU; "
        rf"streaming every 5 s to {re.escape(aggregator.address)} with its shared token; "
        r"annotator off \(--no-annotate\); "
        r"metrics and /healthz on port [1-9]\d*", summary), summary
    assert agent.returncode == 0
