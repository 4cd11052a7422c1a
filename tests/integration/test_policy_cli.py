"""`aios-aggregator policy run` as an operator runs it (a real subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.policy_packages import policy_source, write_package

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

STABILITY = policy_source("""
def __init__(self, rule_id, settings, parameters):
    self.min_healthy = parameters.get("min_healthy", 1)
def eval(self, parameters, input_data, context):
    healthy = sum(1 for n in input_data["nodes_data"] if n["status"] == "healthy")
    print("policy chatter goes to stderr")
    return {"is_stable": healthy >= parameters.get("min_healthy", self.min_healthy),
            "stability_check_data": {"healthy": healthy}}
def management(self, action, data):
    return {"action": action, "echo": data}
""")


def _run(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "aggregator.cli", "policy", "run", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"nodes_data": [{"node_id": "a", "status": "healthy"},
                                               {"node_id": "b", "status": "unhealthy"}]}))
    return path


def test_runs_a_package_and_prints_its_result(tmp_path, input_file):
    package = write_package("tar.gz", tmp_path / "pkg", STABILITY)
    params = tmp_path / "params.json"
    params.write_text('{"min_healthy": 2}')
    done = _run(str(package), "--input", str(input_file), "--parameters", f"@{params}",
                "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"is_stable": False, "stability_check_data": {"healthy": 1}}
    assert "policy chatter goes to stderr" in done.stderr

    done = _run(str(package), "--input", str(input_file), "--parameters", '{"min_healthy": 1}',
                "--cache-dir", str(tmp_path / "cache"))
    assert json.loads(done.stdout)["is_stable"] is True


def test_management_action(tmp_path, input_file):
    package = write_package("dir", tmp_path / "pkg", STABILITY)
    done = _run(str(package), "--input", str(input_file), "--mgmt", "reset", "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "reset"


def test_policy_errors_and_bad_arguments_exit_non_zero(tmp_path, input_file):
    failing = write_package("zip", tmp_path / "bad", policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): return {"n": input_data["missing"]}
"""))
    done = _run(str(failing), "--input", str(input_file), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 1 and done.stdout == ""
    assert "policy error:" in done.stderr and "KeyError: 'missing'" in done.stderr

    bad_input = tmp_path / "bad.json"
    bad_input.write_text("{nope")
    done = _run(str(failing), "--input", str(bad_input))
    assert done.returncode == 2 and f"--input: invalid JSON in {bad_input}: " in done.stderr
    done = _run(str(failing), "--input", str(input_file), "--settings", "[1]")
    assert done.returncode == 2 and "--settings: must be a JSON object, not list" in done.stderr
