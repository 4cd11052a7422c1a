"""Policies named by URI (policy DB stand-in), fetched over HTTP, cached, with requirements; remote mode."""

import base64
import hashlib
import importlib.util
import json
import os
import threading
import zipfile

import pytest

from aggregator.policies import PolicyConfig, PolicyConfigError, PolicyError, PolicyLoadError, open_policy
from tests.support.policy_packages import StandIn, policy_source, write_directory, write_package

pytestmark = pytest.mark.integration

ECHO = policy_source("""
def __init__(self, rule_id, settings, parameters):
    self.settings, self.parameters = settings, parameters
def eval(self, parameters, input_data, context):
    return {"settings": self.settings, "parameters": parameters, "input": input_data}
""")

URI = "aiosv1.policies.cluster-controller-gateway.add-node:v0.0.12-stable"


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.close()


def _config(tmp_path, stand_in, **overrides):
    return PolicyConfig(cache_dir=tmp_path / "cache", policy_db_url=stand_in.url, call_timeout_s=5, **overrides)


def _record(code, settings=None, parameters=None):
    return {"success": True, "data": {"name": URI.split(":")[0], "version": "v0.0.12", "release_tag": "stable",
                                      "code": code, "policy_settings": settings or {},
                                      "policy_parameters": parameters or {}}}


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar.xz"])
def test_uri_resolved_through_the_policy_db_and_downloaded(tmp_path, stand_in, kind):
    package = write_package(kind, tmp_path / "pkg", ECHO)
    stand_in.file_route(f"/packages/add-node.{kind}", package)
    stand_in.json_route("GET", f"/policy/{URI}", _record(
        f"{stand_in.url}/packages/add-node.{kind}",
        settings={"limit": 4, "mode": "strict"}, parameters={"max_gpus": 8, "region": "eu"}))
    config = _config(tmp_path, stand_in)
    with open_policy(URI, settings={"mode": "lenient"}, parameters={"region": "us"}, config=config) as handle:
        assert handle.uri == URI
        result = handle.eval({"node_data": {"id": "n1"}})
    assert result == {"settings": {"limit": 4, "mode": "lenient"},
                      "parameters": {"max_gpus": 8, "region": "us"},
                      "input": {"node_data": {"id": "n1"}}}
    assert [(r.method, r.path) for r in stand_in.requests] == [
        ("GET", f"/policy/{URI}"), ("GET", f"/packages/add-node.{kind}")]

    # cached by URI: a second load asks the DB again but does not download again
    with open_policy(URI, config=config) as handle:
        handle.eval({})
    assert [r.path for r in stand_in.requests].count(f"/packages/add-node.{kind}") == 1


def test_policy_db_refusals_and_bad_records_are_load_errors(tmp_path, stand_in):
    config = _config(tmp_path, stand_in)
    with pytest.raises(PolicyLoadError, match=r"policy DB lookup failed: .*HTTP 404: not found"):
        open_policy("missing:1.0-stable", config=config)
    stand_in.json_route("GET", "/policy/nocode:1.0-stable", {"success": True, "data": {"name": "nocode"}})
    with pytest.raises(PolicyLoadError, match="has no 'code'"):
        open_policy("nocode:1.0-stable", config=config)
    with pytest.raises(PolicyLoadError, match="POLICY_DB_URL is not set"):
        open_policy(URI, config=config.with_overrides(policy_db_url=""))
    with pytest.raises(PolicyLoadError, match="neither a policy rule URI"):
        open_policy("no uri here", config=config)


def test_download_size_limit_and_http_errors(tmp_path, stand_in):
    incompressible = base64.b64encode(os.urandom(40_000)).decode()
    package = write_package("zip", tmp_path / "pkg", ECHO, {"code/blob.txt": incompressible})
    stand_in.file_route("/big.zip", package)
    config = _config(tmp_path, stand_in, max_download_bytes=10_000)
    with pytest.raises(PolicyLoadError, match="over the 10000-byte limit"):
        open_policy(f"{stand_in.url}/big.zip", config=config)
    with pytest.raises(PolicyLoadError, match="HTTP 404"):
        open_policy(f"{stand_in.url}/nothing.zip", config=config)
    assert not list((tmp_path / "cache" / "packages").glob("*/pkg"))


def test_a_download_that_stalls_times_out(tmp_path, stand_in):
    release = threading.Event()

    def stall(_request):
        release.wait(5)
        return 200, "application/zip", b""

    stand_in.routes[("GET", "/slow.zip")] = stall
    config = _config(tmp_path, stand_in, download_timeout_s=0.3)
    try:
        with pytest.raises(PolicyLoadError, match=r"slow.zip: (no answer within|download stalled).*0.3 s"):
            open_policy(f"{stand_in.url}/slow.zip", config=config)
    finally:
        release.set()


def _wheel(folder, name="aiosdemo", version="1.0"):
    """A minimal pure-Python wheel, built by hand so pip needs no network and no build backend."""
    files = {
        f"{name}/__init__.py": "VALUE = 42\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_name = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(text.encode())}")
    files[record_name] = "\n".join(lines + [f"{record_name},,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


USES_DEMO = policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    import aiosdemo
    return {"value": aiosdemo.VALUE, "from": aiosdemo.__file__}
""").replace("class AIOSv1PolicyRule", "import aiosdemo\n\nclass AIOSv1PolicyRule")


def test_requirements_install_into_the_policy_folder_only(tmp_path, stand_in):
    wheel = _wheel(tmp_path / "wheels")
    package = write_package("tar.gz", tmp_path / "pkg", USES_DEMO,
                            {"code/requirements.txt": f"--no-index\n{wheel}\n"})
    config = _config(tmp_path, stand_in)
    with open_policy(str(package), config=config) as handle:
        result = handle.eval({})
    assert result["value"] == 42
    assert result["from"].startswith(str((tmp_path / "cache").resolve()))
    assert importlib.util.find_spec("aiosdemo") is None  # not in the aggregator's environment


def test_requirements_turned_off_gives_a_clear_load_error(tmp_path, stand_in):
    wheel = _wheel(tmp_path / "wheels")
    package = write_directory(tmp_path / "pkg", USES_DEMO, {"code/requirements.txt": f"--no-index\n{wheel}\n"})
    config = _config(tmp_path, stand_in, install_requirements=False)
    with pytest.raises(PolicyLoadError, match=r"No module named 'aiosdemo'.*installing requirements is turned off"):
        open_policy(str(package), config=config)


def test_a_requirement_pip_cannot_install_is_a_load_error(tmp_path, stand_in):
    package = write_directory(tmp_path / "pkg", ECHO, {"code/requirements.txt": "--no-index\nno-such-package-aios==9.9\n"})
    with pytest.raises(PolicyLoadError, match=r"installing requirements.txt failed \(pip exit \d+\)"):
        open_policy(str(package), config=_config(tmp_path, stand_in))


EXECUTOR_ID = "executor-7"


def test_remote_mode_posts_to_the_executor_exactly_as_the_contract_says(tmp_path, stand_in):
    path = f"/executor/{EXECUTOR_ID}/execute_policy"
    stand_in.routes[("POST", path)] = lambda r: (
        200, "application/json",
        json.dumps({"success": True, "data": {"allowed": True, "input_data": r.json()["input_data"]}}).encode())
    config = PolicyConfig.from_env(
        {"POLICY_EXECUTION_MODE": "remote", "POLICY_SYSTEM_EXECUTOR_ID": EXECUTOR_ID,
         "POLICY_EXECUTOR_HOST_URL": stand_in.url}, cache_dir=tmp_path / "cache")
    with open_policy(URI, parameters={"a": 1}, config=config) as handle:
        assert handle.mode == "remote"
        result = handle.eval({"node_data": {"id": "n1"}}, parameters={"b": 2})
        with pytest.raises(PolicyError, match="not available in remote execution mode"):
            handle.management("x", {})
    assert result == {"allowed": True, "input_data": {"node_data": {"id": "n1"}}}
    (request,) = stand_in.requests
    assert (request.method, request.path) == ("POST", path)
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {"policy_rule_uri": URI, "input_data": {"node_data": {"id": "n1"}},
                              "parameters": {"a": 1, "b": 2}}


def test_remote_failures_are_policy_errors(tmp_path, stand_in):
    config = PolicyConfig(mode="remote", executor_id=EXECUTOR_ID, executor_host_url=stand_in.url,
                          cache_dir=tmp_path / "cache")
    path = f"/executor/{EXECUTOR_ID}/execute_policy"
    stand_in.json_route("POST", path, {"success": False, "message": "policy crashed remotely"}, status=500)
    with open_policy(URI, config=config) as handle:
        with pytest.raises(PolicyError, match="HTTP 500: policy crashed remotely"):
            handle.eval({})
        stand_in.json_route("POST", path, {"success": True, "result": {}})
        with pytest.raises(PolicyError, match="no 'data' object"):
            handle.eval({})
    with pytest.raises(PolicyConfigError, match="not by package location"):
        open_policy(str(write_directory(tmp_path / "d", ECHO)), config=config)
    with pytest.raises(PolicyConfigError, match="needs an executor id"):
        open_policy(URI, config=config.with_overrides(executor_id=""))
