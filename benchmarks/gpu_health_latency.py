"""How fast GPU health reaches Kubernetes, and what it costs the API server.

Usage:  python benchmarks/gpu_health_latency.py [--rounds 8] [--interval 10]

1. XID -> Node condition and XID -> taint: `aios-agent run` under the fake NVML
   (8 H100s, sampling every `--interval` s, so the XID cannot ride on a sample),
   `aios-aggregator serve` with `AIOS_QUARANTINE=taint`, both against kmock's
   Kubernetes emulator on loopback. Each round injects XID 79 on one GPU and
   times, at the server (kmock's arrival time), the status PATCH carrying
   GPUXidCritical=True and the Node PATCH carrying the taint; then the operator
   acknowledges (POST /mgmt acknowledge) and both clear before the next round.
   Median and max over `--rounds`.
2. Status PATCHes per node per hour: the agent's GPU health tracker and its
   Node condition writer against kmock, driven through a simulated hour with an
   injected clock (a sample every 10 s): a steady node, a node with one XID
   (acknowledged 20 minutes later) and a GPU lost and back, and a node
   throttling the whole hour (its message's duration moves every sample).
3. What the hung-NVML bound costs a sample: `sample()` of 8 fake H100s through
   the bounded reader against the same reads made one after the other on the
   calling thread (unbounded), interleaved, in one process under the fake
   NVML; median wall and CPU time per sample. `--cost-only`: just this part.
Figures, not assertions; compare side by side on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.gpu.health_tracker import GpuHealthTracker, agent_rule_from_env  # noqa: E402
from agent.kube.client import NodeApi, load_api_client  # noqa: E402
from agent.kube.condition_writer import NodeConditionWriter  # noqa: E402
from proto.health.conditions import CONDITION_TYPES  # noqa: E402
from proto.telemetry.v1.readings import (  # noqa: E402
    Acknowledgement,
    GpuInventory,
    GpuSample,
    HealthEvent,
    NodeInventory,
    NodeSample,
)

TOKEN = "bench-token"
NODE = "bench-name"
TAINT = "gpu.aios/unhealthy"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def _http(method: str, url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _xid_condition(data) -> bool:
    conditions = ((data or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "GPUXidCritical" and c.get("status") == "True" for c in conditions)


def _tainted(data) -> bool:
    taints = ((data or {}).get("spec") or {}).get("taints") or []
    return any(t.get("key") == TAINT for t in taints)


def latency(rounds: int, interval_s: float) -> tuple[list[float], list[float]]:
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm
    from tests.support.kube_api import KubeApiServer

    tmp = Path(tempfile.mkdtemp(prefix="gpu-health-bench-"))
    fake = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "fake-nvml.conf")
    fake.configure(gpus=[h100_sxm(i) for i in range(8)])
    server = KubeApiServer(tmp)
    server.put_node(NODE, labels={"nodeID": "bench"})
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    base.update({"PYTHONPATH": str(REPO), "HOME": str(tmp), "AIOS_TOKEN": TOKEN, "KUBECONFIG": str(server.kubeconfig)})
    grpc_port = _free_port()
    ready = tmp / "ready.json"
    aggregator = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
         "--http-port", "0", "--db", str(tmp / "agg.db"), "--cluster-id", "bench", "--ready-file", str(ready)],
        cwd=REPO, env={**base, "AIOS_QUARANTINE": "taint", "AIOS_QUARANTINE_MAX_PERCENT": "100",
                       "AIOS_QUARANTINE_MAX_CYCLES_PER_DAY": "1000",  # every round is a cycle: no hold here
                       "AIOS_NAMESPACE": "controllers", "CLUSTER_STABILITY_CHECK_INTERVAL": "3600"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    agent = None
    to_condition, to_taint = [], []
    try:
        _wait(ready.exists, 60, "the aggregator")
        http_url = f"http://127.0.0.1:{json.loads(ready.read_text())['http_port']}"
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--aggregator", f"127.0.0.1:{grpc_port}",
             "--interval", str(interval_s)],
            cwd=REPO, env={**base, **fake.env, "NODE_NAME": NODE, "AIOS_METRICS_PORT": "0"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(lambda: "GPUXidCritical" in server.conditions(NODE), 60, "the conditions at start")
        arrivals = server.emulator.arrivals
        for r in range(rounds):
            seen = len(arrivals)
            t0 = time.time()
            fake.inject_xid(r % 8, 79)
            condition = _wait(lambda seen=seen: next((a[0] for a in arrivals[seen:] if a[1] == "PATCH"
                                                      and a[2].endswith("/status") and _xid_condition(a[3])), None),
                              30, "the condition")
            taint = _wait(lambda seen=seen: next((a[0] for a in arrivals[seen:] if a[1] == "PATCH"
                                                  and not a[2].endswith("/status") and _tainted(a[3])), None),
                          30, "the taint")
            to_condition.append(condition - t0)
            to_taint.append(taint - t0)
            # the operator acknowledges once the policy has seen the XID; both clear before the next round
            _wait(lambda: _http("GET", f"{http_url}/check_stability").get("is_stable") is False, 30, "an unstable verdict")
            _http("POST", f"{http_url}/mgmt", {"block_id": "", "service": "stability_checker",
                                               "mgmt_action": "acknowledge", "mgmt_data": {"node_id": "bench"}})
            _wait(lambda: server.conditions(NODE)["GPUXidCritical"]["status"] == "False"
                  and not any(t["key"] == TAINT for t in server.taints(NODE)), 60, "both cleared")
    finally:
        for process in (agent, aggregator):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        server.close()
    return to_condition, to_taint


class _Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def patches_per_hour(scenario: str) -> int:
    from tests.support.kube_api import KubeApiServer

    tmp = Path(tempfile.mkdtemp(prefix="gpu-health-hour-"))
    server = KubeApiServer(tmp)
    server.put_node(NODE, labels={"nodeID": "bench"})
    t0 = 1_764_400_000.0
    clock = _Clock(t0)
    try:
        gpus = tuple(GpuInventory(i, f"GPU-{i}", "NVIDIA H100 80GB HBM3", 81559) for i in range(8))
        tracker = GpuHealthTracker(agent_rule_from_env({}), clock=clock, call_bound_s=5.0)
        tracker.observe_inventory(NodeInventory("bench", NODE, None, gpus))
        writer = NodeConditionWriter(NodeApi(load_api_client(str(server.kubeconfig), env={})), NODE, CONDITION_TYPES,
                                     clock=clock)
        tracker.on_change(writer.observe)
        # discrete events: a sample every 10 s, and the writer whenever it is due (observing wakes it, as in the agent)
        end, k, next_sample, next_writer = t0 + 3600, 0, t0, t0
        while min(next_sample, next_writer) <= end:
            if next_writer <= next_sample:
                clock.t = next_writer
                next_writer = clock.t + max(writer.step(), 0.001)
                continue
            clock.t = next_sample
            lost = scenario == "xid, lost and back" and 1800 <= clock.t - t0 < 1900
            throttled = scenario == "throttling all hour"
            sample_gpus = tuple(
                GpuSample(i, f"GPU-{i}", lost=lost and i == 2, error="NVML_ERROR_GPU_IS_LOST" if lost and i == 2 else "",
                          throttle_reasons=("hw_thermal_slowdown",) if throttled and i == 0 else ())
                for i in range(8)
            )
            tracker.observe_sample(NodeSample(timestamp=clock.t, host=None, gpus=sample_gpus))
            if scenario == "xid, lost and back" and k == 60:
                tracker.observe_event(HealthEvent("xid", clock.t, gpu_index=5, gpu_uuid="GPU-5", xid=79))
            if scenario == "xid, lost and back" and k == 180:
                tracker.acknowledge(Acknowledgement(up_to=clock.t, reason="bench"))
            k += 1
            next_sample = t0 + 10 * k
            next_writer = min(next_writer, clock.t)
        return len([a for a in server.emulator.arrivals if a[1] == "PATCH" and a[2].endswith("/status")])
    finally:
        server.close()


def _sample_cost_child(samples: int) -> None:
    """In a process whose pynvml loads the fake library: bounded vs direct sampling, interleaved
    (wall time, and CPU time of the whole process: the reader thread's share too)."""
    from agent.gpu.collector import open_gpu_collector

    collector = open_gpu_collector()._current  # the live NvmlGpuCollector under the retrying wrapper
    collector.inventory()
    times: dict[str, list[float]] = {"bounded": [], "direct": [], "bounded_cpu": [], "direct_cpu": []}

    def direct() -> None:
        with collector._lock:
            [collector._sample_gpu(gpu) for gpu in collector._gpus]

    for _ in range(samples):
        for name, sample in (("bounded", collector.sample), ("direct", direct)):
            t0, c0 = time.perf_counter(), time.process_time()
            sample()
            times[name].append(time.perf_counter() - t0)
            times[f"{name}_cpu"].append(time.process_time() - c0)
    print(json.dumps({name: statistics.median(values) for name, values in times.items()}))
    collector.close()


def sample_cost(samples: int) -> dict:
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm

    tmp = Path(tempfile.mkdtemp(prefix="gpu-health-cost-"))
    fake = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "fake-nvml.conf")
    fake.configure(gpus=[h100_sxm(i) for i in range(8)])
    out = subprocess.run([sys.executable, __file__, "--sample-cost-child", str(samples)], cwd=REPO,
                         env={**os.environ, **fake.env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def latency_and_patches(args: argparse.Namespace) -> None:
    to_condition, to_taint = latency(args.rounds, args.interval)
    print(f"| path (8 GPUs, sampling every {args.interval:g} s) | median | max | rounds |")
    print("|---|---|---|---|")
    print(f"| XID 79 -> GPUXidCritical=True at the API server | {statistics.median(to_condition):.3f} s "
          f"| {max(to_condition):.3f} s | {len(to_condition)} |")
    print(f"| XID 79 -> taint at the API server | {statistics.median(to_taint):.3f} s | {max(to_taint):.3f} s "
          f"| {len(to_taint)} |")
    print()
    print("| simulated hour (sample every 10 s, heartbeat 300 s) | status PATCHes |")
    print("|---|---|")
    for scenario in ("steady", "xid, lost and back", "throttling all hour"):
        print(f"| {scenario} | {patches_per_hour(scenario)} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--sample-cost-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cost-only", action="store_true", help="only part 3: what the bound costs a sample")
    args = parser.parse_args()
    if args.sample_cost_child:
        _sample_cost_child(args.sample_cost_child)
        return
    if not args.cost_only:
        latency_and_patches(args)
    cost = sample_cost(args.samples)
    print()
    print(json.dumps(cost))
    print("| one sample of 8 GPUs (fake NVML) | wall median | ratio | CPU median | ratio |")
    print("|---|---|---|---|---|")
    print(f"| reads on the sampling thread, one GPU after the other (unbounded) | {cost['direct'] * 1e6:.0f} us | 1.00 "
          f"| {cost['direct_cpu'] * 1e6:.0f} us | 1.00 |")
    print(f"| through the bounded reader (`agent.gpu.bounded`) | {cost['bounded'] * 1e6:.0f} us "
          f"| {cost['bounded'] / cost['direct']:.2f} | {cost['bounded_cpu'] * 1e6:.0f} us "
          f"| {cost['bounded_cpu'] / cost['direct_cpu']:.2f} |")


if __name__ == "__main__":
    main()
