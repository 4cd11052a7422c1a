"""`.ci/run` installs Debian's prometheus package without starting its service, and kills nothing.

The install runs against a stand-in `apt-get` that does what the package's maintainer script
does through `invoke-rc.d`: ask the policy-rc.d whether it may start the service (101: no).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "install_prometheus.sh"

APT_GET = """#!{bash}
echo "apt-get $*" >> "{log}"
if [ "$1" = install ]; then
  # what invoke-rc.d does for the postinst's "start": consult the policy first
  if [ -x "$POLICY_RC_D" ]; then "$POLICY_RC_D" prometheus start; rc=$?; else rc=0; fi
  if [ "$rc" = 101 ]; then echo "start refused by policy-rc.d" >> "{log}"; else echo "service started" >> "{log}"; fi
fi
"""
RECORDER = """#!{bash}
echo "{name} $*" >> "{log}"
"""


@pytest.fixture
def stub_path(tmp_path) -> tuple[dict[str, str], Path]:
    """A PATH holding only what the script may use, apt-get and the process killers as recorders."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    bash = shutil.which("bash")
    for tool in ("mv", "rm", "chmod", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    (bin_dir / "apt-get").write_text(APT_GET.format(bash=bash, log=log))
    for name in ("pkill", "killall", "kill", "service", "systemctl"):
        (bin_dir / name).write_text(RECORDER.format(bash=bash, name=name, log=log))
    for stub in bin_dir.iterdir():
        if not stub.is_symlink():
            stub.chmod(0o755)
    env = {"PATH": str(bin_dir), "POLICY_RC_D": str(tmp_path / "policy-rc.d")}
    return env, log


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    assert SCRIPT.is_file(), "the prometheus part of .ci/run lives in .ci/install_prometheus.sh"
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_ci_run_installs_prometheus_through_the_script_and_kills_nothing_by_name():
    text = (ROOT / ".ci" / "run").read_text()
    assert ".ci/install_prometheus.sh" in text
    for script in (text, SCRIPT.read_text()):
        for killer in ("pkill", "killall", "service prometheus stop"):
            assert killer not in script


def test_the_service_is_refused_its_start_during_the_install_and_the_policy_removed_after(stub_path, tmp_path):
    env, log = stub_path
    done = _run(env)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert "start refused by policy-rc.d" in calls and "service started" not in calls
    assert [c for c in calls if c.split()[0] in ("pkill", "killall", "kill", "service", "systemctl")] == []
    assert not (tmp_path / "policy-rc.d").exists()  # nothing of ours is left behind


def test_a_policy_rc_d_already_there_is_put_back(stub_path, tmp_path):
    env, log = stub_path
    existing = tmp_path / "policy-rc.d"
    existing.write_text("#!/bin/sh\n# the image's own\nexit 0\n")
    existing.chmod(0o755)
    done = _run(env)
    assert done.returncode == 0, done.stderr
    assert "start refused by policy-rc.d" in log.read_text().splitlines()
    assert existing.read_text() == "#!/bin/sh\n# the image's own\nexit 0\n"
    assert not (tmp_path / "policy-rc.d.aios-saved").exists()


def test_a_failing_install_is_a_warning_and_the_policy_is_removed(stub_path, tmp_path):
    env, log = stub_path
    (Path(env["PATH"]) / "apt-get").write_text(f"#!{shutil.which('bash')}\nexit 100\n")
    done = _run(env)
    assert done.returncode == 0
    assert "warning: could not install Debian's prometheus package" in done.stdout
    assert not (tmp_path / "policy-rc.d").exists()
