"""The sandbox settings and the plan a worker applies to itself (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aggregator.policies import PolicyConfig, PolicyConfigError
from aggregator.policies.sandbox.plan import SandboxLimits, network_allowed_for, parse_uid_range, worker_plan


def test_settings_come_from_the_environment():
    limits = PolicyConfig.from_env({
        "AIOS_POLICY_CPU_S": "30", "AIOS_POLICY_MAX_PROCESSES": "8", "AIOS_POLICY_MAX_OPEN_FILES": "64",
        "AIOS_POLICY_MAX_FILE_MB": "0", "AIOS_POLICY_ALLOW_NETWORK": " aiosv1.policies.fetcher:*, ./local ",
        "AIOS_POLICY_WORKER_UIDS": "70000-70010"}).sandbox_limits
    assert limits == SandboxLimits(cpu_s=30, max_processes=8, max_open_files=64, max_file_mb=0,
                                   network_allowed=("aiosv1.policies.fetcher:*", "./local"), worker_uids=(70000, 70010))
    assert PolicyConfig.from_env({}).sandbox_limits == SandboxLimits()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AIOS_POLICY_CPU_S", "lots", "not a whole number"),
    ("AIOS_POLICY_MAX_PROCESSES", "-1", "0 \\(no limit\\) or more"),
    ("AIOS_POLICY_WORKER_UIDS", "12-x", "FIRST-LAST"),
    ("AIOS_POLICY_WORKER_UIDS", "0-10", "1000 <= FIRST"),
])
def test_a_bad_setting_names_itself(name, value, message):
    with pytest.raises(PolicyConfigError, match=message):
        PolicyConfig.from_env({name: value})


def test_uid_ranges():
    assert parse_uid_range("61000-61999") == (61000, 61999)
    assert parse_uid_range("65000") == (65000, 65000)
    assert parse_uid_range("off") is None


def test_the_network_is_allowed_per_policy_only_when_the_operator_says_so():
    assert not network_allowed_for("aiosv1.policies.gate:1.0", ())
    assert network_allowed_for("aiosv1.policies.gate:1.0", ("aiosv1.policies.gate:*",))
    assert not network_allowed_for("aiosv1.policies.other:1.0", ("aiosv1.policies.gate:*",))
    assert network_allowed_for("anything", ("*",))


def test_the_plan_reads_the_interpreter_and_the_package_and_writes_only_scratch(tmp_path):
    code, scratch = tmp_path / "code", tmp_path / "scratch"
    code.mkdir()
    scratch.mkdir()
    plan = worker_plan(label="p", memory_mb=300, limits=SandboxLimits(max_file_mb=2), code_dir=code, site_dir=None,
                       scratch=scratch, uid=61001, child_dir=Path(__file__).parent).to_json()
    assert plan["write_paths"] == [str(scratch)]
    assert {sys.base_prefix, str(code)} <= set(plan["read_paths"])
    assert not any(p.startswith(("/var/run", "/run", "/root", "/home")) and p != sys.base_prefix
                   for p in plan["read_paths"] if not p.startswith(sys.base_prefix))
    assert (plan["uid"], plan["gid"], plan["max_file_bytes"], plan["network_allowed"]) == (61001, 61001, 2 << 20, False)
