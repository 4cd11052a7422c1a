"""Start a local aggregator and an agent on this machine, show the node table, stop.

What `make run` runs (after `pip install -e .`):
  - an aggregator on SQLite under ./var/ (token generated into ./var/token),
  - an agent on this machine (host-only where there is no GPU/NVML),
  - waits until the node shows up, prints `aios-aggregator nodes` and the
    `gpu.aios/info` annotation the agent would write on its Node,
  - stops both (or keeps them running with --keep, until Ctrl-C).

Any interrupt (Ctrl-C, SIGTERM, SIGHUP), at any point, stops both and ends
with the "stopped" line. The two run in sessions of their own, so a Ctrl-C at
the terminal reaches only this script, which stops them in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(var: Path) -> str:
    path = var / "token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _wait(predicate, timeout_s: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"run_local: {' '.join(p.args[2:4])} exited with {p.returncode} while waiting for {what}")
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"run_local: timed out waiting for {what}")


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP as KeyboardInterrupt, held back while a child is being started: a
    child forked but not yet recorded would be left running."""

    def __init__(self) -> None:
        self._holding = 0
        self._pending = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._arrived)

    def _arrived(self, signum: int, frame: object) -> None:
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._pending:
            self._pending = False
            raise KeyboardInterrupt


class _Children:
    """Every process this script starts, each in a session of its own (the terminal's Ctrl-C
    reaches only this script, which stops them in order)."""

    def __init__(self, interrupts: _Interrupts, **popen: Any) -> None:
        self._interrupts = interrupts
        self._popen = popen
        self.daemons: list[subprocess.Popen] = []  # the aggregator and the agent
        self._helpers: list[subprocess.Popen] = []  # short commands (nodes, inventory)

    def start(self, args: list[str], **popen: Any) -> subprocess.Popen:
        with self._interrupts.held():
            process = subprocess.Popen(args, start_new_session=True, **self._popen, **popen)
            self.daemons.append(process)
        return process

    def run(self, args: list[str], *, capture: bool = True) -> subprocess.CompletedProcess:
        with self._interrupts.held():
            pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if capture else {}
            process = subprocess.Popen(args, start_new_session=True, text=True, **self._popen, **pipes)
            self._helpers.append(process)
        out, err = process.communicate()
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def stop(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # stopping is bounded (15 s, then kill): let it finish
        for p in self._helpers:
            if p.poll() is None:
                p.kill()
        for p in self.daemons:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.daemons + self._helpers:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="state directory (./var)")
    parser.add_argument("--interval", type=float, default=1.0, help="agent sampling interval (1 s)")
    parser.add_argument("--keep", action="store_true", help="keep both running until Ctrl-C")
    args = parser.parse_args(argv)
    interrupts = _Interrupts()
    interrupts.install()  # every interrupt takes the Ctrl-C path

    var = args.var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "AIOS_TOKEN": _token(var), "AIOS_AGGREGATOR_ADDR": address, "AIOS_CLUSTER_ID": "local",
           # this machine's agent is no pod with a ServiceAccount token, even where a kubeconfig is set
           "AIOS_AGENT_AUTH": "token"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    ready = var / "aggregator.ready.json"
    ready.unlink(missing_ok=True)
    py = sys.executable
    # the children's stdout for their whole life; closed in the finally below
    logs = {name: open(var / f"{name}.log", "w") for name in ("aggregator", "agent")}  # noqa: SIM115
    children = _Children(interrupts, cwd=ROOT, env=env)
    procs = children.daemons
    interrupted = False
    try:
        children.start(
            [py, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(port),
             "--http-port", str(_free_port()), "--db", str(var / "aggregator.db"), "--ready-file", str(ready)],
            stdout=logs["aggregator"], stderr=subprocess.STDOUT)
        _wait(ready.exists, 30, "the aggregator", procs)
        print(f"aggregator: gRPC on {address}, database {var / 'aggregator.db'}, token in {var / 'token'}", flush=True)
        children.start(
            [py, "-m", "agent.cli", "run", "--interval", str(args.interval), "--log-level", "INFO",
             # not a cluster node: leave any kubeconfig's cluster alone; metrics on a free local port
             "--no-annotate", "--metrics-addr", "127.0.0.1", "--metrics-port", "0"],
            stdout=logs["agent"], stderr=subprocess.STDOUT)

        def node_listed() -> bool:
            out = children.run([py, "-m", "aggregator.cli", "--log-level", "WARNING", "nodes"])
            return out.returncode == 0 and "(no nodes yet)" not in out.stdout

        _wait(node_listed, 60, "the agent's node to show", procs)
        time.sleep(args.interval + 0.5)  # a second sample, so rates such as CPU % are known
        print(f"agent: sampling every {args.interval:g} s (logs in {var}/agent.log)\n")
        print("$ aios-aggregator nodes", flush=True)
        children.run([py, "-m", "aggregator.cli", "--log-level", "WARNING", "nodes"], capture=False).check_returncode()
        inventory = children.run([py, "-m", "agent.cli", "inventory"])
        inventory.check_returncode()
        annotations = json.loads(inventory.stdout)["annotations"]
        print("\nannotation the agent would write on its Node (no Kubernetes here):")
        for key, value in annotations.items():
            print(f"  {key}: {value}")
        if args.keep:
            print(f"\nrunning; try: AIOS_TOKEN=$(cat {var}/token) {_command('aios-aggregator')} nodes "
                  f"--aggregator {address}")
            try:
                print("Ctrl-C stops both", flush=True)  # inside: a Ctrl-C right after it is the normal stop
                while all(p.poll() is None for p in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass  # the way to stop a kept run: not an interruption
    except KeyboardInterrupt:
        interrupted = True
    finally:
        children.stop()
        for f in logs.values():
            f.close()
        print(("\ninterrupted: " if interrupted else "\n") + "stopped the agent and the aggregator", flush=True)
    return 130 if interrupted else 0


def _command(name: str) -> str:
    """How to type one of our commands here: the venv's bin/ is usually not on PATH."""
    installed = Path(sys.executable).parent / name
    if not installed.exists():
        return name
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


if __name__ == "__main__":
    sys.exit(main())
