"""Hostile policies against the real policy runner and aggregator (the Deployment's pair, on loopback).

One `aios-aggregator policy-sidecar` (tempting secrets in its environment and
its own token file) runs the policies the aggregator (`aios-aggregator serve`)
sends it; the hostile policy is the `add_node` pre-check and reports what it
managed to do as its `input_data`. Meanwhile a watcher asks the aggregator's
`/healthz` and gRPC health over and over: it must keep answering throughout.

What is enforced depends on the machine (docs/policy-sandbox.md); each test
reads the runner's `/healthz` and skips, naming the gap, what this machine
cannot enforce (CI and the development machine run as root with Landlock,
network namespaces and cgroup v2: everything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.net import free_port
from tests.support.policy_packages import live_processes_with_argv, policy_source, write_directory
from tests.support.telemetry import ROOT
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGGREGATOR_TOKEN = "aggregator-write-token-do-not-leak"
READ_TOKEN = "aggregator-read-token-do-not-leak"
MAX_PROCESSES, CPU_S, MAX_FILE_MB, MAX_OPEN_FILES = 16, 2, 1, 128

HOSTILE = policy_source('''
def __init__(self, rule_id, settings, parameters):
    pass

def eval(self, parameters, input_data, context):
    import errno, os, re, signal, socket, time
    how = input_data.get("do")
    out = {}

    def attempt(name, action):
        try:
            out[name] = ("done", action())
        except OSError as e:
            out[name] = ("refused", errno.errorcode.get(e.errno, str(e.errno)))

    if how == "steal":
        parent = os.getppid()
        attempt("environ", lambda: open(f"/proc/{parent}/environ", "rb").read().decode("latin-1"))
        attempt("cmdline", lambda: open(f"/proc/{parent}/cmdline", "rb").read().decode("latin-1"))
        attempt("mem", lambda: open(f"/proc/{parent}/mem", "rb").read(16).decode("latin-1"))
        attempt("token_file", lambda: open(input_data["token_file"]).read())
        attempt("aggregator_token_file", lambda: open(input_data["aggregator_token_file"]).read())
        attempt("kill_parent", lambda: os.kill(parent, 0))
        out["own_environ"] = dict(os.environ)
    elif how == "spawn":
        children = []
        try:
            for _ in range(50):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children.append(pid)
            out["stopped"] = None
        except OSError as e:
            out["stopped"] = errno.errorcode.get(e.errno)
        out["started"] = len(children)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    elif how == "files":
        opened = []
        try:
            for _ in range(5000):
                opened.append(os.open("/dev/null", os.O_RDONLY))
            out["stopped"] = None
        except OSError as e:
            out["stopped"] = errno.errorcode.get(e.errno)
        out["opened"] = len(opened)
        for fd in opened:
            os.close(fd)
    elif how == "write":
        scratch = os.environ["AIOS_POLICY_SCRATCH"]
        for name, path in input_data["outside"].items():
            attempt(name, lambda path=path: open(path, "w").write("written by a policy"))
        attempt("scratch", lambda: open(os.path.join(scratch, "notes.txt"), "w").write("mine"))
        attempt("big_file", lambda: open(os.path.join(scratch, "big.bin"), "wb").write(b"x" * (3 * 1024 * 1024)))
    elif how == "connect":
        attempt("loopback", lambda: socket.create_connection(("127.0.0.1", input_data["port"]), timeout=3).close())
    elif how == "daemon":
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", input_data["seconds"]])
            os._exit(0)
        os.waitpid(pid, 0)
        if input_data.get("then") == "exit":
            os._exit(3)
        if input_data.get("then") == "hang":
            while True:
                time.sleep(0.05)
    elif how == "spin":
        while True:
            pass
    return {"allowed": True, "input_data": out}
''')


def _post(url: str, body: dict, token: str | None, timeout_s: float = 60.0) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url: str, timeout_s: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class HealthWatcher:
    """Asks the aggregator's HTTP and gRPC health every 50 ms until stopped; keeps what failed."""

    def __init__(self, http_url: str, grpc_address: str) -> None:
        self.http_url, self.grpc_address = http_url, grpc_address
        self.asked, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.wait(0.05):
                try:
                    status, _ = _get(f"{self.http_url}/healthz", timeout_s=5)
                    served = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    if status != 200 or served != health_pb2.HealthCheckResponse.SERVING:
                        self.failures.append((time.monotonic(), status, served))
                except Exception as exc:  # noqa: BLE001 - any failure to answer is what we count
                    self.failures.append((time.monotonic(), repr(exc)))
                self.asked += 1

    def __enter__(self) -> HealthWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    """The policy runner and the aggregator, configured as the Deployment configures them."""
    tmp = tmp_path_factory.mktemp("pod")
    secret = tmp / "secret"
    secret.mkdir()
    (secret / "token").write_text(AGGREGATOR_TOKEN + "\n")
    (secret / "read-token").write_text(READ_TOKEN + "\n")
    runner_token = tmp / "runner" / "auth" / "token"  # created by whichever starts first
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "POLICY_"))}
    base["PYTHONPATH"] = str(ROOT)
    limits = {"AIOS_POLICY_MAX_PROCESSES": str(MAX_PROCESSES), "AIOS_POLICY_CPU_S": str(CPU_S),
              "AIOS_POLICY_MAX_FILE_MB": str(MAX_FILE_MB), "AIOS_POLICY_MAX_OPEN_FILES": str(MAX_OPEN_FILES),
              "AIOS_POLICY_TIMEOUT_S": "6", "AIOS_POLICY_INSTALL_REQUIREMENTS": "0"}
    # the runner holds secrets a policy would like: the aggregator's token in its environment, its own file
    runner_env = {**base, **limits, "AIOS_TOKEN": AGGREGATOR_TOKEN, "AIOS_TOKEN_FILE": str(secret / "token"),
                  "POLICY_EXECUTION_MODE": "local"}
    runner = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "policy-sidecar", "--host", "127.0.0.1", "--port", "0",
         "--cache-dir", str(tmp / "cache"), "--token-file", str(runner_token)],
        cwd=ROOT, env=runner_env, stdout=subprocess.PIPE, stderr=(tmp / "runner.log").open("w"), text=True)
    line = runner.stdout.readline()
    listening = re.match(r"policy runner listening on 127\.0\.0\.1:(\d+) ", line)
    assert listening, (tmp / "runner.log").read_text()
    runner_url = f"http://127.0.0.1:{listening.group(1)}"
    grpc_port, http_port = free_port(), free_port()
    aggregator_env = {**base, "AIOS_TOKEN_FILE": str(secret / "token"), "AIOS_READ_TOKEN_FILE": str(secret / "read-token"),
                      "AIOS_POLICY_SIDECAR_URL": runner_url, "AIOS_POLICY_SIDECAR_TOKEN_FILE": str(runner_token),
                      "AIOS_GRPC_PORT": str(grpc_port), "AIOS_HTTP_PORT": str(http_port),
                      "AIOS_DB_PATH": str(tmp / "aggregator.db"), "AIOS_CLUSTER_ID": "sandbox-cluster"}
    aggregator = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1",
                                   "--no-kubernetes"], cwd=ROOT, env=aggregator_env,
                                  stdout=(tmp / "aggregator.log").open("w"), stderr=subprocess.STDOUT)
    http_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: aggregator.poll() is None and _get(f"{http_url}/healthz")[0] == 200, what="the aggregator",
                 timeout_s=30)
        policy = write_directory(tmp / "hostile", HOSTILE)
        assert _post(f"{http_url}/pre-check-policies/update", {"add_node": str(policy)}, AGGREGATOR_TOKEN)[0] == 200
        _, health = _get(f"{runner_url}/healthz")
        yield {"http": http_url, "grpc": f"127.0.0.1:{grpc_port}", "runner": runner_url, "tmp": tmp,
               "runner_token_file": runner_token, "aggregator_token_file": secret / "token",
               "sandbox": health["data"]["sandbox"], "runner_pid": runner.pid}
    finally:
        for process in (aggregator, runner):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def attack(pod, body: dict) -> dict:
    """Run the hostile pre-check with `body` while the aggregator's health is watched."""
    with HealthWatcher(pod["http"], pod["grpc"]) as watcher:
        status, answer = _post(f"{pod['http']}/pre-check/add_node", body, AGGREGATOR_TOKEN)
        time.sleep(0.2)  # a few more health checks after the attack
    assert watcher.asked > 0 and watcher.failures == [], f"the aggregator stopped answering: {watcher.failures[:3]}"
    assert status == 200, answer
    return answer["data"]


def requires(pod, what: str, enforced: bool) -> None:
    if not enforced:
        pytest.skip(f"not enforced on this machine ({what}): {pod['sandbox'].get('not_enforced')}")


def test_the_runner_reports_what_its_sandbox_enforces(pod):
    sandbox = pod["sandbox"]
    assert {"network", "filesystem", "kill_sweep", "limits", "not_enforced"} <= set(sandbox)
    assert sandbox["limits"]["max_open_files"] == MAX_OPEN_FILES and sandbox["limits"]["cpu_s"] == CPU_S
    assert sandbox["limits"]["core"] == 0


def test_secrets_of_the_runner_are_out_of_reach(pod):
    runner_token = pod["runner_token_file"].read_text().strip()
    found = attack(pod, {"do": "steal", "token_file": str(pod["runner_token_file"]),
                         "aggregator_token_file": str(pod["aggregator_token_file"])})["input_data"]
    for name in ("environ", "mem", "token_file", "aggregator_token_file"):
        assert found[name][0] == "refused", (name, found[name])
    if pod["sandbox"].get("filesystem") == "landlock":
        assert found["cmdline"][0] == "refused"  # no /proc of any other process
        assert found["kill_parent"][0] == "refused"  # no signal out of its own processes
    text = json.dumps(found)
    for secret in (AGGREGATOR_TOKEN, READ_TOKEN, runner_token):
        assert secret not in text
    assert not {"AIOS_TOKEN", "AIOS_TOKEN_FILE", "KUBECONFIG"} & set(found["own_environ"])


def test_the_runner_token_grants_nothing_on_the_aggregator(pod):
    runner_token = pod["runner_token_file"].read_text().strip()
    status, _ = _post(f"{pod['http']}/pre-check-policies/update", {"add_node": ""}, runner_token)
    assert status == 401


def test_fifty_processes_are_stopped_at_the_limit(pod):
    requires(pod, "process limit", "max_processes" in pod["sandbox"]["limits"])
    found = attack(pod, {"do": "spawn"})["input_data"]
    assert found["stopped"] == "EAGAIN"
    assert found["started"] < MAX_PROCESSES


def test_five_thousand_files_are_stopped_at_the_limit(pod):
    found = attack(pod, {"do": "files"})["input_data"]
    assert found["stopped"] == "EMFILE"
    assert found["opened"] < MAX_OPEN_FILES


def test_writes_outside_the_scratch_folder_are_refused(pod):
    outside = {"tmp": str(pod["tmp"] / "escaped.txt"), "code": str(pod["tmp"] / "hostile" / "code" / "added.py"),
               "system_tmp": f"/tmp/aios-policy-escape-{os.getpid()}"}
    found = attack(pod, {"do": "write", "outside": outside})["input_data"]
    for name, path in outside.items():
        assert found[name][0] == "refused", (name, found[name])
        assert not Path(path).exists()
    assert found["scratch"][0] == "done"
    assert found["big_file"] == ["refused", "EFBIG"]  # over AIOS_POLICY_MAX_FILE_MB


def test_a_loopback_connection_is_refused(pod):
    requires(pod, "network", pod["sandbox"]["network"] != "not enforced")
    port = int(pod["http"].rsplit(":", 1)[1])  # the aggregator's own HTTP API
    found = attack(pod, {"do": "connect", "port": port})["input_data"]
    assert found["loopback"][0] == "refused", found


@pytest.mark.parametrize("then", ["hang", "exit"])
def test_a_double_forked_sleeper_is_gone_when_its_worker_ends(pod, then):
    if then == "exit":  # the worker ends by itself: only a cgroup or its own uid catch what it left
        requires(pod, "sweep of a worker that exits by itself", pod["sandbox"]["kill_sweep"] != "process tree")
    seconds = f"{90 + os.getpid() % 1000 / 1000:.3f}"
    with HealthWatcher(pod["http"], pod["grpc"]) as watcher:
        status, answer = _post(f"{pod['http']}/pre-check/add_node", {"do": "daemon", "seconds": seconds, "then": then},
                               AGGREGATOR_TOKEN)
    assert watcher.failures == []
    assert (status, answer["data"]["allowed"]) == (200, False)  # the worker timed out or died: refused
    assert live_processes_with_argv("sleep", seconds) == [], "the daemon survived its worker"


def test_a_cpu_hog_ends_at_its_cpu_limit(pod):
    with HealthWatcher(pod["http"], pod["grpc"]) as watcher:
        status, answer = _post(f"{pod['http']}/pre-check/add_node", {"do": "spin"}, AGGREGATOR_TOKEN)
    assert watcher.failures == []
    assert status == 200 and answer["data"]["allowed"] is False
    assert "SIGXCPU" in answer["data"]["input_data"] or "CPU time limit" in json.dumps(answer["data"])


def test_after_every_attack_the_policy_still_runs(pod):
    assert attack(pod, {"do": "nothing"})["allowed"] is True


def test_installing_requirements_runs_confined_too(tmp_path):
    """pip (and a setup.py it runs) gets the worker's confinement, with the network and its staging folder."""
    from aggregator.policies.sandbox import SandboxLimits, run_confined

    secret = tmp_path / "secret-token"
    secret.write_text(AGGREGATOR_TOKEN)
    secret.chmod(0o600)
    code, staging = tmp_path / "code", tmp_path / "work" / "staging"
    code.mkdir()
    staging.mkdir(parents=True)
    script = (
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        if path.endswith('.out'):\n"
        "            open(path, 'w').write('x'); print('wrote', path)\n"
        "        else:\n"
        "            open(path).read(); print('read', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, e.errno)\n"
    )
    done = run_confined(
        [sys.executable, "-c", script, str(secret), str(staging / "ok.out"), str(tmp_path / "escape.out")],
        label="requirements", limits=SandboxLimits(), cwd=code, read=[code], write=staging, env={}, timeout_s=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"refused {secret} 13" in lines or f"refused {secret} 2" in lines  # denied, or hidden from its view
    assert f"wrote {staging / 'ok.out'}" in lines
    assert any(line.startswith(f"refused {tmp_path / 'escape.out'}") for line in lines)
    assert (staging / "ok.out").stat().st_uid == os.geteuid()  # given back: no worker uid may change it later
