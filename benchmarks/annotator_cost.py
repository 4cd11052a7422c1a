"""What keeping the Node's GPU annotation costs the agent, and how fast it follows the GPUs.

Usage:  python benchmarks/annotator_cost.py [--calls 20000] [--rounds 6] [--interval 0.2]

1. `NodeAnnotator.observe()` on the sampling thread, per call (median of
   `--calls`, `time.perf_counter`): an unchanged inventory (the steady state:
   it computes the desired metadata, finds it equal, returns) and a changed
   one (also wakes the worker), for 0, 1 and 8 GPUs (8 with 7 MIG devices each).
   No network in either: that is why sampling is never blocked.
2. Lost GPU -> Node patched: `aios-agent annotate` (loop mode, `--interval`)
   in a subprocess under the fake NVML (8 A100s), against kmock's Kubernetes
   emulator on loopback; the time from `lose_gpu()` / `restore_gpu()` to the
   PATCH arriving at the server, over `--rounds` losses and returns, median
   and max, next to the interval.
3. Requests the API server sees in steady state, counted over a window.
Figures, not assertions; compare side by side on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.kube.annotator import NodeAnnotator  # noqa: E402
from proto.telemetry.v1.readings import MIB, GpuInventory, MigDevice, NodeInventory  # noqa: E402


def _gpu(i: int, mig: bool) -> GpuInventory:
    migs = tuple(MigDevice(m, f"MIG-{i}-{m}", 9856 * MIB, "1g.10gb") for m in range(7)) if mig else ()
    return GpuInventory(i, f"GPU-{i}", "NVIDIA A100-SXM4-80GB", 81920 * MIB, compute_capability=(8, 0),
                        architecture="ampere", features=("fp16", "bf16", "tf32"), mig_enabled=mig, mig_devices=migs)


def _inventory(n: int, mig: bool = False) -> NodeInventory:
    return NodeInventory("id", "node", None, tuple(_gpu(i, mig) for i in range(n)))


def observe_cost(calls: int) -> list[tuple[str, float, float]]:
    rows = []
    for label, n, mig in (("0 GPUs", 0, False), ("1 GPU", 1, False), ("8 GPUs + 56 MIG", 8, True)):
        annotator = NodeAnnotator(None, "node")  # observe() never calls the API
        a, b = _inventory(n, mig), _inventory(n + 1, mig)
        same, changed = [], []
        annotator.observe(a)
        for k in range(calls):
            t0 = time.perf_counter()
            annotator.observe(a)
            same.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            annotator.observe(b if k % 2 == 0 else a)
            changed.append(time.perf_counter() - t0)
        rows.append((label, statistics.median(same) * 1e6, statistics.median(changed) * 1e6))
    return rows


def follow_latency(rounds: int, interval_s: float) -> tuple[list[float], int, int, float]:
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import a100_80gb
    from tests.support.kube_api import KubeApiServer

    tmp = Path(tempfile.mkdtemp(prefix="annotator-bench-"))
    fake = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "fake-nvml.conf")
    fake.configure(gpus=[a100_80gb(i) for i in range(8)])
    server = KubeApiServer(tmp)
    server.put_node("bench-node", labels={"nodeID": "b"})
    env = {**os.environ, **fake.env, "PYTHONPATH": str(REPO), "HOME": str(tmp)}
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "annotate", "--kubeconfig", str(server.kubeconfig),
         "--node-name", "bench-node", "--interval", str(interval_s), "--resync-interval", "1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        server.wait_for(lambda: len(server.requests("PATCH")) == 1, timeout_s=60, what="first patch")
        for r in range(rounds):
            before = len(server.requests("PATCH"))
            t0 = time.monotonic()
            (fake.lose_gpu if r % 2 == 0 else fake.restore_gpu)(3)
            server.wait_for(lambda before=before: len(server.requests("PATCH")) > before, timeout_s=30, what="patch")
            latencies.append(time.monotonic() - t0)
            time.sleep(interval_s)
        # steady state: resync every 1 s, nothing changes
        gets0, patches0 = len(server.requests("GET")), len(server.requests("PATCH"))
        window = 5.0
        time.sleep(window)
        gets, patches = len(server.requests("GET")) - gets0, len(server.requests("PATCH")) - patches0
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        server.close()
    return latencies, gets, patches, window


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()

    print("| inventory | observe(), unchanged (us, median) | observe(), changed (us, median) |")
    print("|---|---|---|")
    for label, same, changed in observe_cost(args.calls):
        print(f"| {label} | {same:.1f} | {changed:.1f} |")

    latencies, gets, patches, window = follow_latency(args.rounds, args.interval)
    print()
    print("| sampling interval | GPU lost/back -> PATCH at server, median | max | rounds |")
    print("|---|---|---|---|")
    print(f"| {args.interval:.2f} s | {statistics.median(latencies):.3f} s | {max(latencies):.3f} s | {len(latencies)} |")
    print()
    print(f"steady state, resync every 1 s over {window:.0f} s: {gets} GETs, {patches} PATCHes")


if __name__ == "__main__":
    main()
