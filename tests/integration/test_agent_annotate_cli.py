"""`aios-agent annotate` as an operator or the DaemonSet runs it: subprocesses
against kmock (through a kubeconfig), reading GPUs through the fake NVML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.fakenvml.presets import a100_80gb, h100_sxm, with_mig
from tests.support.kube_api import forbidden, kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NODE = "gpu-node-9"
_CLEARED = ("NODE_ID", "NODE_NAME", "KUBERNETES_NODE_NAME", "AIOS_HOST_ROOT", "AIOS_NVML_LIBRARY", "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST", "AIOS_INTERVAL_S", "AIOS_ANNOTATE_RESYNC_S")


def agent_env(tmp_path: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    # HOME without ~/.kube/config: only what the test passes reaches a cluster.
    env.update({"PYTHONPATH": str(REPO), "HOME": str(tmp_path)}, **(extra or {}))
    return env


def annotate(tmp_path, *args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "agent.cli", "annotate", *args], cwd=REPO,
                          env=agent_env(tmp_path, env), capture_output=True, text=True, timeout=timeout)


def consume(annotation: str):
    entries = json.loads(annotation)
    return len(entries), sum(e["memory"] for e in entries), {e["modelName"] for e in entries}


def test_once_writes_then_finds_nothing_to_do(kube_api, fake_nvml, tmp_path):
    kube_api.put_node(NODE, labels={"nodeID": "nid-9"}, annotations={"keep": "me"})
    fake_nvml.configure(gpus=[h100_sxm(i) for i in range(8)])
    args = ("--once", "--kubeconfig", str(kube_api.kubeconfig), "--node-name", NODE)

    first = annotate(tmp_path, *args, env=fake_nvml.env)
    assert first.returncode == 0, first.stderr
    assert f"node {NODE}: patched" in first.stdout
    assert consume(kube_api.annotations(NODE)["gpu.aios/info"]) == (8, 8 * 81559, {"NVIDIA H100 80GB HBM3"})
    assert kube_api.annotations(NODE)["keep"] == "me"
    assert kube_api.labels(NODE)["gpu.aios/count"] == "8" and kube_api.labels(NODE)["nodeID"] == "nid-9"

    second = annotate(tmp_path, *args, env=fake_nvml.env)
    assert second.returncode == 0, second.stderr
    assert f"node {NODE}: already up to date" in second.stdout
    assert len(kube_api.requests("PATCH")) == 1


def test_once_on_a_cpu_node_writes_an_empty_list(kube_api, tmp_path):
    kube_api.put_node(NODE)
    proc = annotate(tmp_path, "--once", "--nvml-library", str(tmp_path / "libnvidia-ml.so.1"),
                    env={"KUBECONFIG": str(kube_api.kubeconfig), "NODE_NAME": NODE})
    assert proc.returncode == 0, proc.stderr
    assert kube_api.annotations(NODE) == {"gpu.aios/info": "[]"}
    assert kube_api.labels(NODE) == {"gpu.aios/count": "0"}


def test_dry_run_prints_the_patch_and_sends_nothing(fake_nvml, tmp_path):
    fake_nvml.configure(gpus=[a100_80gb(0), h100_sxm(1)])
    proc = annotate(tmp_path, "--dry-run", env={**fake_nvml.env, "NODE_NAME": NODE})
    assert proc.returncode == 0, proc.stderr
    patch = json.loads(proc.stdout)
    annotation = patch["metadata"]["annotations"]["gpu.aios/info"]
    assert consume(annotation) == (2, 81920 + 81559, {"NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"})
    assert patch["metadata"]["labels"] == {
        "gpu.aios/count": "2",
        "gpu.aios/memory-mb": "81559",
        "gpu.aios/product": None,  # mixed models: no single product to label
        "gpu.aios/architecture": None,
        "gpu.aios/mig-enabled": "false",
    }


def test_once_forbidden_patch_exits_1_naming_verb_and_resource(kube_api, fake_nvml, tmp_path):
    kube_api.put_node(NODE)
    kube_api.emulator.refusals["PATCH"] = forbidden("patch", name=NODE)
    fake_nvml.configure(gpus=[a100_80gb(0)])
    proc = annotate(tmp_path, "--once", "--kubeconfig", str(kube_api.kubeconfig), "--node-name", NODE,
                    env=fake_nvml.env)
    assert proc.returncode == 1
    assert "forbidden (403): cannot patch resource nodes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "gpu.aios/info" not in kube_api.annotations(NODE)


@pytest.fixture
def no_cluster_env(monkeypatch, tmp_path):
    """In-process runs: no kubeconfig or pod around unless the test passes one."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_once_forbidden_get_exits_1(kube_api, no_cluster_env, capsys):
    kube_api.put_node(NODE)
    kube_api.emulator.refusals["GET"] = forbidden("get", name=NODE)
    assert main(["annotate", "--once", "--kubeconfig", str(kube_api.kubeconfig), "--node-name", NODE]) == 1
    err = capsys.readouterr().err
    assert "forbidden (403): cannot get resource nodes" in err and "verbs [get]" in err


def test_no_cluster_configuration_exits_2(no_cluster_env, capsys):
    assert main(["annotate", "--once", "--node-name", NODE]) == 2
    err = capsys.readouterr().err
    assert "no Kubernetes API configuration" in err and "KUBECONFIG" in err


def test_loop_follows_a_lost_gpu_its_return_and_a_mig_change(kube_api, fake_nvml, tmp_path):
    kube_api.put_node(NODE, labels={"nodeID": "nid-9"})
    fake_nvml.configure(gpus=[a100_80gb(i) for i in range(4)])
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "annotate", "--kubeconfig", str(kube_api.kubeconfig),
         "--node-name", NODE, "--interval", "0.2", "--resync-interval", "30"],
        cwd=REPO, env=agent_env(tmp_path, fake_nvml.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        count = lambda: kube_api.labels(NODE).get("gpu.aios/count")  # noqa: E731
        kube_api.wait_for(lambda: count() == "4", timeout_s=20, what="the first annotation")
        fake_nvml.lose_gpu(2)
        kube_api.wait_for(lambda: count() == "3", timeout_s=10, what="the lost GPU leaving the annotation")
        entries = json.loads(kube_api.annotations(NODE)["gpu.aios/info"])
        assert [e["index"] for e in entries] == [0, 1, 3]
        fake_nvml.restore_gpu(2)
        kube_api.wait_for(lambda: count() == "4", timeout_s=10, what="the GPU coming back")

        # An operator turns MIG on for GPU 0 (two 3g.40gb instances).
        mig = with_mig(fake_nvml.gpus[0], ("3g.40gb", "3g.40gb"))
        fake_nvml.set(0, mig_current=mig.mig_current, mig_pending=mig.mig_pending, mig_devices=mig.mig_devices)
        kube_api.wait_for(lambda: "gpu.aios/mig-enabled" not in kube_api.labels(NODE), timeout_s=10,
                          what="the MIG change")  # GPUs no longer agree on MIG: label removed
        gpu0 = json.loads(kube_api.annotations(NODE)["gpu.aios/info"])[0]
        assert gpu0["migEnabled"] is True
        assert [(m["memory"], m["profile"]) for m in gpu0["migDevices"]] == [(40960, "3g.40gb")] * 2
        assert len(kube_api.requests("PATCH")) == 4
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err
