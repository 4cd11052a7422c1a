"""`make run` (scripts/run_local.py): an interrupt at any point ends with the "stopped" line,
no traceback, and nothing it started left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.telemetry import ROOT

pytestmark = pytest.mark.integration

STOPPED = "stopped the agent and the aggregator"


def _children(pid: int) -> set[int]:
    """Every process whose parent is `pid` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class RunLocal:
    """The script as `make run` starts it, in a process group of its own (as a terminal's job)."""

    def __init__(self, tmp_path: Path, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
        env["AIOS_NVML_LIBRARY"] = str(tmp_path / "no-such-libnvidia-ml.so.1")  # host-only, quick
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "scripts" / "run_local.py"), "--var", str(tmp_path / "var"), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for_line(self, start: str, timeout_s: float = 120) -> None:
        with self._seen:
            ok = self._seen.wait_for(lambda: any(line.startswith(start) for line in self.lines)
                                     or self.proc.poll() is not None, timeout_s)
        assert ok and any(line.startswith(start) for line in self.lines), (self.lines, self.proc.poll())

    def interrupt(self, sig: int) -> tuple[int, str, set[int]]:
        """Send `sig` to the whole group (what a Ctrl-C at the terminal does); the exit status, stderr,
        and the processes the script had running at that moment."""
        running = _children(self.proc.pid)
        os.killpg(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(10)
        return code, self.proc.stderr.read(), running


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_while_waiting_for_the_node_stops_both_cleanly(tmp_path, sig):
    run = RunLocal(tmp_path)
    run.wait_for_line("aggregator: gRPC on")  # it now starts the agent and waits for its node
    code, stderr, running = run.interrupt(sig)
    assert running, "the aggregator was running when the interrupt came"
    assert "Traceback" not in stderr, stderr
    assert run.lines[-1].endswith(STOPPED), run.lines
    assert code == 130
    assert not [pid for pid in running if _alive(pid)], "left running"


def test_run_keep_runs_until_ctrl_c_then_stops_both(tmp_path):
    run = RunLocal(tmp_path, "--keep")
    run.wait_for_line("Ctrl-C stops both")
    assert any("NODE" in line for line in run.lines)  # the node table was shown
    hint = next(line for line in run.lines if line.startswith("running; try:"))
    assert "bin/aios-aggregator nodes" in hint  # where the command is, not a bare name off PATH
    code, stderr, running = run.interrupt(signal.SIGINT)
    assert len(running) >= 2  # the aggregator and the agent
    assert "Traceback" not in stderr, stderr
    assert run.lines[-1] == STOPPED and code == 0
    assert not [pid for pid in running if _alive(pid)], "left running"
