"""No setting ever crash-loops the policy runner (the pod's container 1, `aios-aggregator policy-sidecar`):
a missing executor setting, an unreachable executor, a bad value or a token file not there yet is
answered in every policy call and listed on /healthz, and the runner recovers when the service or the
file appears."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from aggregator.policies import PolicyConfig, PolicyConfigError, PolicyError, open_policy
from tests.integration.test_policy_sidecar import _post
from tests.integration.test_policy_sidecar import _stop as stop_runner
from tests.support.net import free_port
from tests.support.policy_packages import StandIn
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "runner-recovery-token"
URI = "gate:1.0-stable"
ANSWER = {"success": True, "data": {"allowed": True, "by": "ex-1"}}


def start_runner(tmp_path: Path, env: dict[str, str], *, token: bool | None = True) -> tuple[subprocess.Popen, str]:
    """token: True, the runner's token file holds TOKEN; None, no token configured at all."""
    token_file = tmp_path / "token"
    if token:
        token_file.write_text(TOKEN + "\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("POLICY_", "AIOS_"))}
    full.update(PYTHONPATH=str(REPO), AIOS_POLICY_INSTALL_REQUIREMENTS="0", **env)
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "policy-sidecar", "--host", "127.0.0.1", "--port", "0",
         "--cache-dir", str(tmp_path / "cache"), *(("--token-file", str(token_file)) if token else ()),
         "--probe-interval-s", "0.2"],
        cwd=REPO, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    listening = re.match(r"policy runner listening on 127\.0\.0\.1:(\d+) ", line)
    assert listening, process.stderr.read() if process.poll() is not None else line
    return process, f"http://127.0.0.1:{listening.group(1)}"


def healthz(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
        assert answer.status == 200  # the liveness probe: never fails while the runner serves
        return json.loads(answer.read())["data"]


def client(url: str) -> PolicyConfig:
    return PolicyConfig(sidecar_url=url, sidecar_token=TOKEN, http_timeout_s=10)


def test_remote_mode_without_the_executor_url_serves_and_answers_the_problem_per_call(tmp_path):
    # the guide's patch, applied to a ConfigMap that leaves POLICY_EXECUTOR_HOST_URL empty
    process, url = start_runner(tmp_path, {"POLICY_EXECUTION_MODE": "remote", "POLICY_SYSTEM_EXECUTOR_ID": "ex-1",
                                           "POLICY_EXECUTOR_HOST_URL": ""})
    try:
        health = healthz(url)
        assert health["mode"] == "remote" and health["ready"] is False
        assert health["problems"] == ["remote policy execution needs POLICY_EXECUTOR_HOST_URL"]
        for _ in range(2):  # every call, not only the first
            with pytest.raises(PolicyConfigError, match="remote policy execution needs POLICY_EXECUTOR_HOST_URL"):
                open_policy(URI, config=client(url))
        assert process.poll() is None
    finally:
        stderr = stop_runner(process)
    assert process.returncode == 0
    assert "remote policy execution needs POLICY_EXECUTOR_HOST_URL" in stderr


def test_an_unreachable_executor_is_reported_and_the_runner_recovers_when_it_appears(tmp_path):
    port = free_port()
    process, url = start_runner(tmp_path, {"POLICY_EXECUTION_MODE": "remote", "POLICY_SYSTEM_EXECUTOR_ID": "ex-1",
                                           "POLICY_EXECUTOR_HOST_URL": f"http://127.0.0.1:{port}"})
    executor = None
    try:
        health = wait_for(lambda: (h := healthz(url))["services"]["executor"]["reachable"] is False and h,
                          what="the executor reported unreachable")
        assert health["ready"] is False
        assert health["problems"][0].startswith(f"executor at http://127.0.0.1:{port} unreachable: ")
        with open_policy(URI, config=client(url)) as handle, pytest.raises(
                PolicyError, match=rf"remote executor ex-1: POST http://127\.0\.0\.1:{port}/.*refused"):
            handle.eval({"cluster_data": {}})

        executor = StandIn(port=port)  # the network's policies service comes up
        executor.json_route("POST", "/executor/ex-1/execute_policy", ANSWER)
        health = wait_for(lambda: (h := healthz(url))["ready"] and h, what="the executor reported reachable")
        assert health["problems"] == [] and health["services"]["executor"]["error"] == ""
        with open_policy(URI, config=client(url)) as handle:
            assert handle.eval({"cluster_data": {}}) == ANSWER["data"]
        assert process.poll() is None
    finally:
        stop_runner(process)
        if executor is not None:
            executor.close()


@pytest.mark.parametrize("bad", [{"POLICY_EXECUTION_MODE": "remotely"}, {"AIOS_POLICY_TIMEOUT_S": "thirty"}],
                         ids=["mode", "timeout"])
def test_a_bad_value_is_answered_not_fatal(tmp_path, bad):
    process, url = start_runner(tmp_path, bad)
    try:
        (problem,) = healthz(url)["problems"]
        assert next(iter(bad)) in problem  # names the variable
        with pytest.raises(PolicyConfigError, match="the policy runner's settings are unusable: " + re.escape(problem)):
            open_policy("default-stability:1.0-stable", config=client(url))
    finally:
        stop_runner(process)
    assert process.returncode == 0


def test_a_runner_without_a_token_serves_and_says_so(tmp_path):
    process, url = start_runner(tmp_path, {"POLICY_EXECUTION_MODE": "local"}, token=None)
    try:
        health = healthz(url)
        assert health["ready"] is False
        assert health["problems"][-1].startswith("the policy runner has no token of its own: give --token-file")
        status, answer = _post(f"{url}/policies/close", {"source": URI}, TOKEN)
        assert (status, answer["success"]) == (401, False)
        assert process.poll() is None
    finally:
        stderr = stop_runner(process)
    assert process.returncode == 0 and "has no token of its own" in stderr
