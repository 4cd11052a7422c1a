"""`aios-agent inventory` and `aios-agent sample` as an operator runs them: subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proto.telemetry.v1.readings import MIB
from tests.support.hostfs import NVME0_MB, NVME1_MB, Counters, write_host_tree

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration  # the agent CLI as a subprocess


def run_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for name in ("NODE_ID", "NODE_NAME", "KUBERNETES_NODE_NAME", "AIOS_HOST_ROOT", "AIOS_NVML_LIBRARY"):
        if env is None or name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=60,
    )


def run_json(*args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_agent(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _without_nvml(tmp_path) -> dict[str, str]:
    """No NVML library, so the result does not depend on whether this machine has GPUs
    (NVIDIA_VISIBLE_DEVICES only means something to the container runtime)."""
    return {"AIOS_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1")}


def test_inventory_on_this_machine_is_a_cpu_node(tmp_path):
    doc = run_json("inventory", env=_without_nvml(tmp_path))

    assert doc["annotations"] == {"gpu.aios/info": "[]"}
    assert doc["gpus"] == [] and doc["gpu_count"] == 0
    assert doc["nvml_status"] != "ok"  # says why there are no GPUs
    assert doc["node_id"] == doc["node_name"] == os.uname().nodename
    assert doc["host"]["cpu_logical"] == os.cpu_count()
    assert doc["host"]["kernel"] == os.uname().release
    assert "lo" not in [n["name"] for n in doc["host"]["nics"]]


def test_inventory_reads_the_host_root_and_downward_api_identity(tmp_path):
    root = write_host_tree(tmp_path / "host", Counters())
    doc = run_json(
        "inventory", "--host-root", str(root),
        env={"NODE_ID": "node-0042", "KUBERNETES_NODE_NAME": "gpu-node-7.cluster"},
    )
    host = doc["host"]
    assert (doc["node_id"], doc["node_name"]) == ("node-0042", "gpu-node-7.cluster")
    assert (host["hostname"], host["os"], host["cpu_logical"], host["cpu_physical"]) == (
        "gpu-node-7", "Ubuntu 22.04.4 LTS", 8, 4,
    )
    assert [(d["name"], d["size_bytes"]) for d in host["disks"]] == [
        ("nvme0n1", NVME0_MB * MIB), ("nvme1n1", NVME1_MB * MIB)]
    assert host["disk_total_bytes"] == (NVME0_MB + NVME1_MB) * MIB
    assert [(n["name"], n["speed_mbps"]) for n in host["nics"]] == [("ens1f0", 25000), ("ens2f0", 100000)]


def test_sample_on_this_machine_has_rates(tmp_path):
    doc = run_json("sample", "--interval", "0.2", env=_without_nvml(tmp_path))

    assert doc["gpus"] == []
    assert [(c["name"], c["success"]) for c in doc["collectors"]] == [("gpu", True), ("host", True)]
    host = doc["host"]
    for rate in ("page_faults_per_s", "disk_read_bytes_per_s", "disk_write_iops", "tx_bytes_per_s", "rx_bytes_per_s_1m"):
        assert host[rate] is not None and host[rate] >= 0, rate
    assert host["threads_total"] >= host["processes_total"] >= 1


def test_sample_rejects_a_bad_interval():
    proc = run_agent("sample", "--interval", "0")
    assert proc.returncode == 2
    assert "--interval: must be > 0" in proc.stderr


def test_sample_with_missing_host_root_reports_the_host_collector_failed(tmp_path):
    doc = run_json("sample", "--interval", "0.05", "--host-root", str(tmp_path / "nowhere"))
    assert doc["host"] is None
    assert [(c["name"], c["success"]) for c in doc["collectors"]] == [("gpu", True), ("host", False)]
    assert [e["kind"] for e in doc["health_events"]] == ["collector_error", "collector_error"]
