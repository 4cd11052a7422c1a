"""The default stability policy's generated copy of the health rule matches the catalogue (scripts/gen_policy_xids.py)."""

import importlib.util

from proto.health.gpu_rule import DEFAULT_THROTTLE_REASONS
from proto.health.xid_catalog import CATALOG_REVISION, XID_CATALOG, default_fatal_xids
from scripts import gen_policy_xids


def _policy_module(path=gen_policy_xids.POLICY_FILE):
    spec = importlib.util.spec_from_file_location("default_stability_policy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_policy_copy_is_the_catalogue():
    policy = _policy_module()
    assert {code: entry.resolution.value for code, entry in XID_CATALOG.items()} == policy.XID_RESOLUTIONS
    assert sorted(default_fatal_xids()) == policy.DEFAULT_FATAL_XIDS
    assert policy.DEFAULT_PARAMETERS["fatal_xids"] == sorted(default_fatal_xids())
    assert set(policy.DEFAULT_THROTTLE_REASONS) == DEFAULT_THROTTLE_REASONS
    assert policy.XID_CATALOG_REVISION == CATALOG_REVISION


def test_the_check_fails_when_the_copy_drifts(tmp_path, monkeypatch, capsys):
    assert gen_policy_xids.main(["--check"]) == 0
    drifted = tmp_path / "function.py"
    text = gen_policy_xids.POLICY_FILE.read_text(encoding="utf-8")
    drifted.write_text(text.replace('"reboot_node": (\n        79,', '"reboot_node": (\n        80,'), encoding="utf-8")
    monkeypatch.setattr(gen_policy_xids, "POLICY_FILE", drifted)
    monkeypatch.setattr(gen_policy_xids, "ROOT", tmp_path)
    assert gen_policy_xids.main(["--check"]) == 1
    assert "differs from the catalogue" in capsys.readouterr().err
    assert gen_policy_xids.main([]) == 0  # rewrites it
    assert _policy_module(drifted).XID_RESOLUTIONS[79] == "reboot_node"
    assert gen_policy_xids.main(["--check"]) == 0
