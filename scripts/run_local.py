"""Start a local aggregator and an agent on this machine, show the node table, stop.

What `make run` runs (after `pip install -e .`):
  - an aggregator on SQLite under ./var/ (token generated into ./var/token),
  - an agent on this machine (host-only where there is no GPU/NVML),
  - waits until the node shows up, prints `aios-aggregator nodes` and the
    `gpu.aios/info` annotation the agent would write on its Node,
  - stops both (or keeps them running with --keep, until Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
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
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [py, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(port),
             "--http-port", str(_free_port()), "--db", str(var / "aggregator.db"), "--ready-file", str(ready)],
            cwd=ROOT, env=env, stdout=logs["aggregator"], stderr=subprocess.STDOUT))
        _wait(ready.exists, 30, "the aggregator", procs)
        print(f"aggregator: gRPC on {address}, database {var / 'aggregator.db'}, token in {var / 'token'}")
        procs.append(subprocess.Popen(
            [py, "-m", "agent.cli", "run", "--interval", str(args.interval), "--log-level", "INFO",
             # not a cluster node: leave any kubeconfig's cluster alone; metrics on a free local port
             "--no-annotate", "--metrics-addr", "127.0.0.1", "--metrics-port", "0"],
            cwd=ROOT, env=env, stdout=logs["agent"], stderr=subprocess.STDOUT))

        def node_listed() -> bool:
            out = subprocess.run([py, "-m", "aggregator.cli", "--log-level", "WARNING", "nodes"],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            return out.returncode == 0 and "(no nodes yet)" not in out.stdout

        _wait(node_listed, 60, "the agent's node to show", procs)
        time.sleep(args.interval + 0.5)  # a second sample, so rates such as CPU % are known
        print(f"agent: sampling every {args.interval:g} s (logs in {var}/agent.log)\n")
        print("$ aios-aggregator nodes")
        subprocess.run([py, "-m", "aggregator.cli", "--log-level", "WARNING", "nodes"], cwd=ROOT, env=env, check=True)
        inventory = subprocess.run([py, "-m", "agent.cli", "inventory"], cwd=ROOT, env=env,
                                   capture_output=True, text=True, check=True)
        annotations = json.loads(inventory.stdout)["annotations"]
        print("\nannotation the agent would write on its Node (no Kubernetes here):")
        for key, value in annotations.items():
            print(f"  {key}: {value}")
        if args.keep:
            print(f"\nrunning; try: AIOS_TOKEN=$(cat {var}/token) aios-aggregator nodes --aggregator {address}")
            print("Ctrl-C stops both")
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        _stop(procs)
        for f in logs.values():
            f.close()
    print("\nstopped the agent and the aggregator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
