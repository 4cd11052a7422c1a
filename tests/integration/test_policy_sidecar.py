"""The policy runner sidecar: the aggregator's policy calls go through it, and its own env picks the mode."""

import functools
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig, PolicyError, PolicyLoadError, open_policy
from aggregator.policies.sidecar_server import HandleRegistry, create_sidecar_app
from aggregator.web.serving import start_http_in_thread
from tests.support.net import free_port
from tests.support.policy_packages import StandIn, policy_source, write_package

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "sidecar-test-token"

POLICY = policy_source("""
def __init__(self, rule_id, settings, parameters):
    self.settings = settings
    self.calls = 0
    self.threshold = 1

def eval(self, parameters, input_data, context):
    import os
    self.calls += 1
    if input_data.get("do") == "exit":
        os._exit(9)
    if input_data.get("do") == "loop":
        while True:
            pass
    return {"calls": self.calls, "parameters": parameters, "settings": self.settings,
            "threshold": self.threshold, "input": input_data, "pid": os.getpid()}

def management(self, action, data):
    if action == "set_threshold":
        self.threshold = data["value"]
        return {"threshold": self.threshold}
    raise ValueError("unknown action " + action)
""")


def _runner_config(tmp_path, **overrides) -> PolicyConfig:
    return PolicyConfig(
        cache_dir=tmp_path / "runner-cache", call_timeout_s=1.5, load_timeout_s=10, memory_limit_mb=300,
        install_requirements=False, **overrides,
    )


def _client_config(url: str, **overrides) -> PolicyConfig:
    return PolicyConfig(sidecar_url=url, sidecar_token=TOKEN, http_timeout_s=5, **overrides)


@pytest.fixture
def sidecar(tmp_path):
    registry = HandleRegistry(
        lambda source, settings, parameters: open_policy(
            source, settings=settings, parameters=parameters, config=_runner_config(tmp_path)
        )
    )
    app = create_sidecar_app(registry=registry, tokens=(TOKEN,), config=_runner_config(tmp_path))
    server = start_http_in_thread(app)
    server.url = f"http://127.0.0.1:{server.port}"
    server.registry = registry
    yield server
    if server._thread.is_alive():  # a test may have stopped it already
        server.stop()


@pytest.fixture
def package(tmp_path) -> Path:
    return write_package("zip", tmp_path / "pkg", POLICY)


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_eval_and_management_run_in_the_sidecar(sidecar, package):
    with open_policy(str(package), settings={"s": 1}, parameters={"p": "a", "q": 1},
                     config=_client_config(sidecar.url)) as handle:
        assert handle.mode == "local"  # as the sidecar runs it
        result = handle.eval({"node": "n1"}, parameters={"q": 2})
        assert result["input"] == {"node": "n1"}
        assert result["parameters"] == {"p": "a", "q": 2}
        assert result["settings"] == {"s": 1}
        assert result["pid"] != os.getpid()  # not in this process
        assert handle.management("set_threshold", {"value": 7}) == {"threshold": 7}
        assert handle.eval({})["threshold"] == 7
        with pytest.raises(PolicyError, match="unknown action bogus") as raised:
            handle.management("bogus", {})
        assert not isinstance(raised.value, PolicyLoadError)
        assert len(sidecar.registry) == 1
    assert len(sidecar.registry) == 0  # close() released the sidecar's worker


def test_state_is_kept_per_handle(sidecar, package):
    config = _client_config(sidecar.url)
    with open_policy(str(package), config=config) as first, open_policy(str(package), config=config) as second:
        assert [first.eval({})["calls"] for _ in range(3)] == [1, 2, 3]
        assert second.eval({})["calls"] == 1  # its own instance, as two local handles would have
        assert first.eval({})["calls"] == 4


def test_hostile_policy_is_a_policy_error_and_the_next_call_is_served(sidecar, package):
    with open_policy(str(package), config=_client_config(sidecar.url)) as handle:
        first_pid = handle.eval({})["pid"]
        with pytest.raises(PolicyError, match="exit") as exited:
            handle.eval({"do": "exit"})
        assert "unreachable" not in exited.value.reason
        after_exit = handle.eval({})
        assert after_exit["calls"] == 1 and after_exit["pid"] != first_pid  # a fresh worker
        with pytest.raises(PolicyError, match="1.5"):
            handle.eval({"do": "loop"})  # the runner's per-call limit
        assert handle.eval({"again": True})["input"] == {"again": True}
    status, health = _get_json(f"{sidecar.url}/healthz")
    assert status == 200 and health["success"] is True


def _get_json(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_a_broken_package_fails_at_open_as_a_load_error(sidecar, tmp_path):
    broken = write_package("dir", tmp_path / "broken", "def broken(:\n")
    with pytest.raises(PolicyLoadError, match="SyntaxError"):
        open_policy(str(broken), config=_client_config(sidecar.url))
    assert len(sidecar.registry) == 0


def test_everything_but_healthz_needs_the_token(sidecar, package):
    status, health = _get_json(f"{sidecar.url}/healthz")
    assert status == 200 and health["data"]["mode"] == "local"
    body = {"source": str(package), "input_data": {}, "action": "set_threshold", "data": {"value": 1}}
    for path in ("/policies/open", "/policies/eval", "/policies/management", "/policies/close"):
        for token in (None, "wrong"):
            status, answer = _post(f"{sidecar.url}{path}", body, token)
            assert (status, answer["success"]) == (401, False), (path, token)
    assert len(sidecar.registry) == 0  # nothing was loaded for them
    status, answer = _post(f"{sidecar.url}/policies/eval", body, TOKEN)
    assert status == 200 and answer["data"]["calls"] == 1
    with pytest.raises(PolicyError, match="refused our token"):
        open_policy(str(package), config=_client_config(sidecar.url).with_overrides(sidecar_token="wrong"))


def test_bad_requests_name_the_field(sidecar):
    status, answer = _post(f"{sidecar.url}/policies/eval", {"source": "x:1.0-a", "input_data": []}, TOKEN)
    assert status == 400 and answer["message"] == "input_data: must be a JSON object, not list"
    status, answer = _post(f"{sidecar.url}/policies/management", {"source": "x:1.0-a", "data": {}}, TOKEN)
    assert status == 400 and answer["message"] == "action: a non-empty string is required"
    status, answer = _post(f"{sidecar.url}/policies/eval", {"input_data": {}}, TOKEN)
    assert status == 400 and answer["message"].startswith("source:")


def test_a_sidecar_that_is_down_is_a_clear_policy_error(sidecar, package):
    with pytest.raises(PolicyError, match=r"^policy runner unreachable: .*Connection refused"):
        open_policy(str(package), config=_client_config(f"http://127.0.0.1:{free_port()}"))
    handle = open_policy(str(package), config=_client_config(sidecar.url))
    assert len(sidecar.registry) == 1
    sidecar.stop()
    assert len(sidecar.registry) == 0  # shutdown closed the runner's workers
    with pytest.raises(PolicyError, match=r"^policy runner unreachable"):
        handle.eval({})
    handle.close()  # does not raise with the runner gone


# --- the real command, with the env the operators' patch produces ------------------------------

URI = "gate:1.0-stable"


def _start_command(tmp_path: Path, mode_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLICY_", "AIOS_"))}
    env.update(PYTHONPATH=str(REPO), AIOS_POLICY_INSTALL_REQUIREMENTS="0", **mode_env)
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "policy-sidecar", "--host", "127.0.0.1", "--port", "0",
         "--cache-dir", str(tmp_path / "cache"), "--token-file", str(token_file)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()  # printed once it listens, naming the port it got
    listening = re.match(r"policy runner listening on 127\.0\.0\.1:(\d+) ", line)
    assert listening, process.stderr.read() if process.poll() is not None else line
    return process, f"http://127.0.0.1:{listening.group(1)}"


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.stderr.read()


@pytest.fixture
def services(tmp_path):
    """The policy DB (serving the URI as a zip) and an executor stand-in answering for ex-1."""
    server = StandIn()
    zip_path = write_package("zip", tmp_path / "pkg", POLICY)
    server.file_route("/packages/gate.zip", zip_path)
    server.json_route("GET", f"/policy/{URI}", {"success": True, "data": {
        "name": "gate", "version": "1.0", "release_tag": "stable", "code": f"{server.url}/packages/gate.zip",
        "policy_settings": {}, "policy_parameters": {"limit": 3}}})
    server.json_route("POST", "/executor/ex-1/execute_policy", {"success": True, "data": {"allowed": True, "by": "ex-1"}})
    yield server
    server.close()


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_the_patched_env_of_the_runner_decides_the_mode(tmp_path, services, mode):
    # exactly what the guide's `kubectl patch` leaves in container 1's env, plus its ConfigMaps
    patched = {"POLICY_EXECUTION_MODE": mode, "POLICY_SYSTEM_EXECUTOR_ID": "ex-1" if mode == "remote" else ""}
    process, url = _start_command(tmp_path, {**patched, "POLICY_DB_URL": services.url,
                                             "POLICY_EXECUTOR_HOST_URL": services.url})
    try:
        # the aggregator's side: its own env says nothing about the mode, only where the runner is
        client = PolicyConfig.from_env({"AIOS_POLICY_SIDECAR_URL": url,
                                        "AIOS_POLICY_SIDECAR_TOKEN_FILE": str(tmp_path / "token")})
        with open_policy(URI, parameters={"limit": 5}, config=client) as handle:
            assert handle.mode == mode
            result = handle.eval({"cluster_data": {"id": "c1"}})
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr
    executed = [r for r in services.requests if r.path.startswith("/executor/")]
    if mode == "remote":
        assert result == {"allowed": True, "by": "ex-1"}
        assert [(r.method, r.path) for r in executed] == [("POST", "/executor/ex-1/execute_policy")]
        assert executed[0].json() == {"policy_rule_uri": URI, "input_data": {"cluster_data": {"id": "c1"}},
                                      "parameters": {"limit": 5}}
    else:
        assert executed == []
        assert result["input"] == {"cluster_data": {"id": "c1"}} and result["parameters"] == {"limit": 5}
        assert [r.path for r in services.requests] == [f"/policy/{URI}", "/packages/gate.zip"]


# remote mode without an executor: served and answered per call (test_policy_runner_recovery.py)


def test_governance_prechecks_through_the_sidecar(sidecar, tmp_path):
    gate = write_package("dir", tmp_path / "gate", policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    gpus = input_data["node_data"]["gpus"]
    if gpus > 8:
        return {"allowed": False, "input_data": "too many GPUs: %d" % gpus}
    return {"allowed": True, "input_data": dict(input_data, checked=True)}
"""))
    # how the service wires it: the config read from the aggregator container's env
    config = PolicyConfig.from_env({"AIOS_POLICY_SIDECAR_URL": sidecar.url, "AIOS_POLICY_SIDECAR_TOKEN": TOKEN})
    db = Database(tmp_path / "g.db")
    governance = Governance(db, functools.partial(open_policy, config=config))
    try:
        governance.update({"add_node": str(gate)})
        allowed = governance.precheck("add_node", {"node_data": {"gpus": 8}})
        refused = governance.precheck("add_node", {"node_data": {"gpus": 9}})
        assert len(sidecar.registry) == 1  # the policy runs in the sidecar
    finally:
        governance.close()
        db.close()
    assert allowed.allowed and allowed.input_data == {"node_data": {"gpus": 8}, "checked": True}
    assert not refused.allowed and refused.reason == "too many GPUs: 9"
    assert len(sidecar.registry) == 0  # governance's close reached the sidecar
