"""What a new user reads from the aggregator's commands: each message says what happened and what to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.integration.parser_standin import ParserStandIn
from tests.integration.test_onboard_command import kube_node, onboard
from tests.support.kube_api import NODES, kube_api  # noqa: F401 - fixture
from tests.support.net import free_port
from tests.support.onboarding_data import SAMPLE_CONFIG_TEXT
from tests.support.telemetry import ROOT, TOKEN, AggregatorThread

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_") and k != "KUBECONFIG"}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "aggregator.cli", *args], cwd=ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(SAMPLE_CONFIG_TEXT)
    return path


def test_onboard_names_the_unreachable_aggregator(tmp_path, config_file):
    parser = ParserStandIn()
    address = f"127.0.0.1:{free_port()}"
    try:
        code, _, err = onboard(config_file, "--onboard", "--api-url", parser.url, "--output", tmp_path,
                               "--aggregator", address, "--no-kubernetes", "--timeout", "2")
    finally:
        parser.close()
    assert code == 3
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"the aggregator at {address}: UNAVAILABLE" in error
    assert "--no-kubernetes is set" in error and error.endswith("nothing was posted")
    assert "no --aggregator given" not in err
    assert "falling back to the Kubernetes API" not in err  # it was told not to ask Kubernetes
    assert parser.requests == []


def test_onboard_without_any_source_still_says_no_aggregator_was_given(tmp_path, config_file):
    code, _, err = onboard(config_file, "--output", tmp_path, "--no-kubernetes")
    assert code == 3
    assert "error: no node data: no --aggregator given, and --no-kubernetes is set" in err


def test_nodes_takes_a_token_and_names_the_variables_when_refused(tmp_path):
    aggregator = AggregatorThread(tmp_path)
    try:
        refused = cli("nodes", "--aggregator", aggregator.address)  # no token anywhere
        wrong = cli("node", "n1", "--aggregator", aggregator.address, "--token", "not-the-token")
        table = cli("nodes", "--aggregator", aggregator.address, "--token", TOKEN)
        from_env = cli("nodes", "--aggregator", aggregator.address, env={"AIOS_TOKEN": TOKEN})
    finally:
        aggregator.close()
    for done in (refused, wrong):
        assert done.returncode == 1
        assert "UNAUTHENTICATED" in done.stderr
        assert "--token, AIOS_TOKEN or AIOS_TOKEN_FILE" in done.stderr
        assert "Traceback" not in done.stderr
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("NODE") and "(no nodes yet)" in table.stdout
    assert from_env.returncode == 0 and from_env.stdout == table.stdout


def test_serve_help_describes_the_command():
    done = cli("serve", "--help")
    assert done.returncode == 0
    description = done.stdout.split("\n\n", 1)[1].split("\noptions:")[0]  # between the usage and the options
    assert "run the aggregator" in description and "AIOS_TOKEN" in description


def test_serve_and_onboard_help_give_the_same_kubeconfig_search_order():
    wide = {"COLUMNS": "1000"}  # argparse wraps at the terminal's width: one line per option here
    serve = words(cli("serve", "--help", env=wide).stdout)
    onboard_help = words(cli("onboard", "--help", env=wide).stdout)
    order = "default: KUBECONFIG, then the pod's service account (in-cluster)"
    assert order + "; neither: those features are off" in serve
    assert order + ", then ~/.kube/config" in onboard_help  # an operator's own machine, as kubectl
    assert "in-cluster, then KUBECONFIG" not in onboard_help


def test_onboard_reads_kubeconfig_before_the_home_one(tmp_path, config_file, kube_api):
    kube_api.emulator.objects[NODES, None, "worker-a"] = kube_node("worker-a", labels={"nodeID": "node-a"}, gpus=[])
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(kube_api.kubeconfig.read_text())
    dead = json.loads(kube_api.kubeconfig.read_text())
    dead["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "dead-kubeconfig").write_text(json.dumps(dead))
    out = tmp_path / "out"
    from_home = cli("onboard", str(config_file), "--output", str(out), "--timeout", "5", env={"HOME": str(home)})
    assert from_home.returncode == 0, from_home.stderr
    assert [n["id"] for n in json.loads((out / "cluster-eu-1_populated.json").read_text())["nodes"]["nodeData"]] == [
        "node-a"]
    from_env = cli("onboard", str(config_file), "--output", str(out), "--timeout", "5",
                   env={"HOME": str(home), "KUBECONFIG": str(tmp_path / "dead-kubeconfig")})
    assert from_env.returncode == 3  # KUBECONFIG wins over ~/.kube/config, and its server is down
    assert "Kubernetes API unreachable" in from_env.stderr
