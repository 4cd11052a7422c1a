"""What the policy-runner sidecar hop costs over calling the local worker directly.

    python benchmarks/policy_sidecar.py [--calls 1000] [--nodes 5000] [--repeats 10]

Starts `aios-aggregator policy-sidecar` as its own process (as in the pod: its
own container, loopback HTTP with the bearer token) and compares, side by side,
the same policies opened in this process in local mode (worker process, pipes):
1. calls/s of a trivial governance policy;
2. latency of one stability evaluation over N nodes_data entries.
Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from policy_calls import STABILITY, TRIVIAL, _package, nodes_data  # noqa: E402

from aggregator.policies import PolicyConfig, open_policy  # noqa: E402
from tests.support.net import free_port  # noqa: E402


def _rate(handle, data, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        handle.eval(data)
    return calls / (time.perf_counter() - t0)


def _latency_ms(handle, data, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        handle.eval(data)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        token_file = root / "token"
        token_file.write_text("bench-token\n")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POLICY_", "AIOS_"))}
        env.update(PYTHONPATH=str(REPO), AIOS_POLICY_TIMEOUT_S="60", AIOS_POLICY_MEMORY_MB="2048")
        runner = subprocess.Popen(
            [sys.executable, "-m", "aggregator.cli", "policy-sidecar", "--host", "127.0.0.1", "--port", str(port),
             "--cache-dir", str(root / "runner-cache"), "--token-file", str(token_file)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert runner.stdout.readline().startswith("policy runner listening")
            direct = PolicyConfig(cache_dir=root / "cache", call_timeout_s=60, memory_limit_mb=2048)
            via = PolicyConfig(sidecar_url=f"http://127.0.0.1:{port}", sidecar_token_file=str(token_file),
                               call_timeout_s=60)
            trivial, stability = _package(root, "trivial", TRIVIAL), _package(root, "stability", STABILITY)
            small = {"node_data": {"id": "node-00001", "gpus": {"count": 8}}, "cluster_data": {"id": "c1"}}
            big = {"cluster_data": {"id": "c1"}, "nodes_data": nodes_data(args.nodes)}
            big["cluster"] = big["cluster_data"]

            rates = {"direct": [], "sidecar": []}
            lat = {"direct": [], "sidecar": []}
            with open_policy(str(trivial), config=direct) as d, open_policy(str(trivial), config=via) as s:
                for h in (d, s):
                    _rate(h, small, 100)  # warm up
                for _ in range(3):  # alternate, so load changes hit both
                    rates["direct"].append(_rate(d, small, args.calls))
                    rates["sidecar"].append(_rate(s, small, args.calls))
            with open_policy(str(stability), config=direct) as d, open_policy(str(stability), config=via) as s:
                d.eval(big), s.eval(big)
                for _ in range(args.repeats):
                    lat["direct"] += _latency_ms(d, big, 1)
                    lat["sidecar"] += _latency_ms(s, big, 1)
        finally:
            runner.terminate()
            runner.wait(10)

    rd, rs = statistics.median(rates["direct"]), statistics.median(rates["sidecar"])
    ld, ls = statistics.median(lat["direct"]), statistics.median(lat["sidecar"])
    print("| measure | local worker, direct | through the sidecar | ratio |")
    print("|---|---|---|---|")
    print(f"| trivial policy, calls/s (median of 3 x {args.calls}) | {rd:,.0f} | {rs:,.0f} | {rd / rs:.1f}x |")
    print(f"| per-call overhead of the hop, us | | {(1 / rs - 1 / rd) * 1e6:,.0f} | |")
    print(f"| one eval, {args.nodes} nodes x 8 GPUs, ms (median of {args.repeats}) | {ld:.0f} | {ls:.0f} "
          f"| {ls / ld:.1f}x |")


if __name__ == "__main__":
    main()
