"""Local execution in worker processes: state kept, hostile policies reported and survived."""

import datetime
import os
import re
import sys
import time
from pathlib import Path

import pytest

from aggregator.policies import PolicyConfig, PolicyError, PolicyLoadError, PolicyRaised, open_policy
from tests.support.policy_packages import live_processes_with_argv, policy_source, write_directory, write_package

pytestmark = pytest.mark.integration

HOSTILE = policy_source("""
def __init__(self, rule_id, settings, parameters):
    self.calls = 0

def eval(self, parameters, input_data, context):
    import os, sys
    self.calls += 1
    how = input_data.get("do")
    if how == "raise":
        raise RuntimeError("refusing on purpose")
    if how == "loop":
        while True:
            pass
    if how == "exit":
        os._exit(7)
    if how == "sys_exit":
        sys.exit(3)
    if how == "allocate":
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    if how == "not_json":
        return {"when": object()}
    if how == "nan":
        return {"x": float("nan")}
    if how == "not_dict":
        return ["allowed"]
    if how == "print":
        print("chatter on stdout that must not break the protocol")
        sys.stdout.flush()
        os.write(1, b"raw bytes on fd 1\\n")
    return {"calls": self.calls, "pid": os.getpid(), "context_runs": context.setdefault("runs", 0)}
""")


@pytest.fixture
def config(tmp_path):
    return PolicyConfig(cache_dir=tmp_path / "cache", call_timeout_s=1.5, load_timeout_s=10, memory_limit_mb=300)


@pytest.fixture
def hostile(tmp_path, config):
    handle = open_policy(str(write_directory(tmp_path / "hostile", HOSTILE)), config=config)
    yield handle
    handle.close()


@pytest.mark.parametrize(
    "how, reason",
    [
        ("loop", r"did not finish within 1.5 s; worker killed"),
        ("exit", r"the worker exited with code 7"),
        ("sys_exit", r"policy called sys.exit\(3\)"),
        ("allocate", r"MemoryError"),
    ],
)
def test_a_broken_worker_is_reported_and_the_next_call_gets_a_fresh_one(hostile, how, reason):
    first = hostile.eval({})
    assert first["calls"] == 1
    with pytest.raises(PolicyError, match=reason) as caught:
        hostile.eval({"do": how})
    assert caught.value.reason == str(caught.value)
    assert not isinstance(caught.value, PolicyRaised)
    after = hostile.eval({})
    assert after["pid"] != first["pid"]  # a fresh worker
    assert after["calls"] == 1  # ... with a fresh instance
    assert "function" not in sys.modules  # the policy never ran in this process


@pytest.mark.parametrize(
    "how, reason",
    [
        ("raise", r"RuntimeError: refusing on purpose \(function.py line \d+ in eval\)"),
        ("not_json", r"not JSON: Object of type object is not JSON serializable"),
        ("nan", r"not JSON: Out of range float values"),
        ("not_dict", r"eval returned list, not a dict"),
    ],
)
def test_the_policys_own_exception_keeps_its_worker_and_state(hostile, how, reason):
    first = hostile.eval({})
    with pytest.raises(PolicyRaised, match=reason) as caught:
        hostile.eval({"do": how})
    assert re.search(reason, caught.value.policy_message)
    after = hostile.eval({})
    assert after["pid"] == first["pid"]  # the same worker ...
    assert after["calls"] == 3  # ... and the same instance: the failed call counted too


def test_instance_and_context_persist_across_calls(hostile):
    results = [hostile.eval({}) for _ in range(3)]
    assert [r["calls"] for r in results] == [1, 2, 3]
    assert len({r["pid"] for r in results}) == 1


def test_prints_do_not_corrupt_the_protocol(hostile):
    assert hostile.eval({"do": "print"})["calls"] == 1
    assert hostile.eval({})["calls"] == 2  # same worker, still in step


def test_a_hung_policy_takes_its_own_children_down_with_it(tmp_path, config):
    seconds = f"{60 + os.getpid() % 1000 / 1000:.3f}"  # a command line no other test runs
    source = policy_source(f"""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    import subprocess, time
    child = subprocess.Popen(["sleep", {seconds!r}])
    while True:
        time.sleep(0.05)
""")
    with open_policy(str(write_directory(tmp_path / "spawner", source)), config=config) as handle:
        with pytest.raises(PolicyError, match="did not finish"):
            handle.eval({})
        assert live_processes_with_argv("sleep", seconds) == [], "the policy's child survived its worker"


def test_settings_parameters_and_per_call_parameters(tmp_path, config):
    source = policy_source("""
def __init__(self, rule_id, settings, parameters):
    self.rule_id, self.settings, self.init_parameters = rule_id, settings, parameters
def eval(self, parameters, input_data, context):
    return {"rule_id": self.rule_id, "settings": self.settings, "init": self.init_parameters,
            "call": parameters, "input": input_data}
""")
    package = write_package("tar.xz", tmp_path / "p", source)
    with open_policy(str(package), settings={"s": 1}, parameters={"a": 1, "b": 2}, config=config) as handle:
        result = handle.eval({"nodes": [1, 2]}, parameters={"b": 3})
    assert result == {"rule_id": "", "settings": {"s": 1}, "init": {"a": 1, "b": 2},
                      "call": {"a": 1, "b": 3}, "input": {"nodes": [1, 2]}}


def test_management_calls_and_a_policy_without_management(tmp_path, config):
    with_mgmt = policy_source("""
def __init__(self, rule_id, settings, parameters): self.threshold = 1
def eval(self, parameters, input_data, context): return {"threshold": self.threshold}
def management(self, action, data):
    if action == "set_threshold":
        self.threshold = data["value"]
        return {"ok": True}
    raise ValueError(f"unknown action {action}")
""")
    with open_policy(str(write_directory(tmp_path / "m", with_mgmt)), config=config) as handle:
        assert handle.management("set_threshold", {"value": 5}) == {"ok": True}
        assert handle.eval({}) == {"threshold": 5}
        with pytest.raises(PolicyError, match="unknown action nope"):
            handle.management("nope", {})
    with open_policy(str(write_directory(tmp_path / "h", HOSTILE)), config=config) as handle:
        with pytest.raises(PolicyError, match="no management method"):
            handle.management("anything", {})
        assert handle.eval({})["calls"] == 1


@pytest.mark.parametrize(
    "source, reason",
    [
        ("raise ImportError('no such thing')\n", r"cannot load: ImportError: no such thing \(function.py line 1"),
        ("class Other: pass\n", "defines no class AIOSv1PolicyRule"),
        (policy_source("def __init__(self, a, b, c): raise KeyError('cfg')\ndef eval(self, p, i, c): return {}"),
         r"KeyError: 'cfg'"),
        ("import os\nos._exit(4)\n", "the worker exited with code 4"),
        ("while True: pass\n", r"loading the policy did not finish within 1 s"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_packages_that_cannot_load_fail_at_open(tmp_path, config, source, reason):
    config = config.with_overrides(load_timeout_s=1)
    with pytest.raises(PolicyLoadError, match=reason):
        open_policy(str(write_directory(tmp_path / "bad", source)), config=config)


def test_input_that_is_not_json_is_refused_without_killing_the_worker(hostile):
    pid = hostile.eval({})["pid"]
    with pytest.raises(PolicyError, match="not JSON-serializable"):
        hostile.eval({"x": datetime.datetime(2026, 1, 1)})
    assert hostile.eval({})["pid"] == pid


def test_the_worker_does_not_see_the_aggregator_token(tmp_path, config, monkeypatch):
    monkeypatch.setenv("AIOS_TOKEN", "s3cret")
    source = policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    import os
    return {"token": os.environ.get("AIOS_TOKEN"), "cwd": os.getcwd()}
""")
    with open_policy(str(write_directory(tmp_path / "env", source)), config=config) as handle:
        result = handle.eval({})
    assert result["token"] is None
    assert Path(result["cwd"]) == (tmp_path / "env" / "code").resolve()


def test_closed_handle_refuses_and_stops_its_worker(hostile):
    pid = hostile.eval({})["pid"]
    hostile.close()
    with pytest.raises(PolicyError, match="closed"):
        hostile.eval({})
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")


def test_a_relative_cache_dir_is_resolved_once_where_the_aggregator_started(tmp_path, monkeypatch):
    """Issue 13, case 7: a relative AIOS_POLICY_CACHE_DIR doubled the path inside the worker."""
    package = write_package("zip", tmp_path / "pkg", policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    import os
    return {"cwd": os.getcwd()}
"""))
    monkeypatch.chdir(tmp_path)
    config = PolicyConfig.from_env({"AIOS_POLICY_CACHE_DIR": "relative-cache"})
    assert config.cache_dir == tmp_path / "relative-cache"
    with open_policy(str(package), config=config) as handle:
        ran_in = Path(handle.eval({})["cwd"])
    assert ran_in.is_relative_to(tmp_path / "relative-cache")
    assert not (ran_in / "relative-cache").exists()


@pytest.mark.parametrize(
    "answer, where",
    [
        ('{"x": "\\ud800"}', "$.x: holds a lone surrogate"),
        ('{"x": ' + "[" * 70 + "]" * 70 + "}", "nested deeper than 64 levels"),
        ('{"x": ' + "9" * 60 + "}", "integer of 60 digits"),
    ],
)
def test_an_answer_that_is_not_strict_json_is_the_policys_error_and_keeps_its_worker(tmp_path, config, answer, where):
    """Issue 13: what a policy answers is stored and served as JSON, so it must be readable back."""
    source = policy_source(f"""
def __init__(self, rule_id, settings, parameters):
    self.calls = 0
def eval(self, parameters, input_data, context):
    import json
    self.calls += 1
    return {{"calls": self.calls}} if input_data.get("fine") else json.loads({answer!r})
""")
    with open_policy(str(write_directory(tmp_path / "odd", source)), config=config) as handle:
        with pytest.raises(PolicyRaised, match=re.escape(where)):
            handle.eval({})
        assert handle.eval({"fine": True}) == {"calls": 2}


def test_running_a_policy_writes_nothing_into_its_folder(tmp_path, config):
    # a directory package runs in place (the shipped default policies live in the source tree):
    # the worker's `python -I` ignores PYTHONDONTWRITEBYTECODE, so it must not write bytecode itself
    package = write_directory(tmp_path / "in-place", policy_source("""
def __init__(self, rule_id, settings, parameters):
    import helper
    self.helper = helper

def eval(self, parameters, input_data, context):
    return {"doubled": self.helper.double(input_data["n"])}
"""), extra={"code/helper.py": "def double(n):\n    return 2 * n\n"})
    before = sorted(p.relative_to(package) for p in package.rglob("*"))
    with open_policy(str(package), config=config) as handle:
        assert handle.eval({"n": 21}) == {"doubled": 42}
    after = sorted(p.relative_to(package) for p in package.rglob("*"))
    assert after == before, f"the policy run wrote {sorted(set(after) - set(before))}"
