"""Benchmark: one full stability check over a large cluster, and XID-to-verdict latency.

1. Full check: N nodes x G GPUs (default 5,000 x 8). Times each phase of
   `StabilityChecker.check()`: building `nodes_data` from `NodeState`s, the
   default policy's eval in its worker process (aggregator.policies, JSON over
   a pipe both ways), and storing the verdict in SQLite (WAL, temp dir).
   Median of --repeat checks after one warm-up.

2. XID latency: a real aggregator (`aggregator.service.Aggregator`:
   gRPC ingest + NodeRegistry) and the checker subscribed to it; a
   simulated agent sends a health event with XID 79 over the real gRPC
   stream; measured from the send to the stored unstable verdict.
   The agent samples every --agent-interval (10 s, the default): the XID
   travels as a health event the moment the agent's NVML event waiter sees
   it, not with the next sample.

    python benchmarks/stability_check.py [--nodes 5000] [--gpus 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import StabilityChecker, policy_opener
from aggregator.stability.verdicts import VerdictStore
from proto.telemetry.v1.readings import HealthEvent
from tests.support.stability import InProcessRegistry, node_state


class TimedChecker(StabilityChecker):
    """Records how long each phase of a check took (same code paths, wrapped)."""

    phases: dict[str, float]

    def _build_nodes_data(self):
        t0 = time.perf_counter()
        result = super()._build_nodes_data()
        self.phases["nodes_data"] = time.perf_counter() - t0
        self.last_nodes_data = result
        return result


def full_check(nodes: int, gpus: int, repeat: int) -> dict:
    now = time.time()
    states = [node_state(f"node-{i:05d}", gpus=gpus, now=now) for i in range(nodes)]
    # a few GPUs with history: XIDs that are not fatal, and one throttling
    states[7] = node_state("node-00007", gpus=gpus, now=now,
                           events=(HealthEvent(kind="xid", timestamp=now - 5, gpu_index=1, xid=13),),
                           throttle={2: ("sw_power_cap",)})
    registry = InProcessRegistry(states)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "aggregator.sqlite")
        verdicts = VerdictStore(db)
        opener = policy_opener(PolicyConfig(cache_dir=Path(tmp) / "cache", call_timeout_s=60))

        def timed_opener(source, parameters):
            handle = opener(source, parameters)
            original = handle.eval

            def eval_(input_data, params=None):
                t0 = time.perf_counter()
                try:
                    return original(input_data, params)
                finally:
                    checker.phases["policy_eval"] = time.perf_counter() - t0

            handle.eval = eval_
            return handle

        original_record = verdicts.record

        def record(verdict):
            t0 = time.perf_counter()
            try:
                return original_record(verdict)
            finally:
                checker.phases["store"] = time.perf_counter() - t0

        verdicts.record = record
        checker = TimedChecker(cluster_id="bench", registry=registry, cluster_store=ClusterStore(db),
                               verdicts=verdicts, open_policy=timed_opener)
        checker.phases = {}
        checker.check("warm-up")  # starts the worker
        runs = []
        for _ in range(repeat):
            checker.phases = {}
            t0 = time.perf_counter()
            verdict = checker.check("bench")
            checker.phases["total"] = time.perf_counter() - t0
            if verdict.outcome != "stable":
                raise SystemExit(f"unexpected verdict: {verdict}")
            runs.append(dict(checker.phases))
        runs[0]["nodes_data_json_bytes"] = len(json.dumps(checker.last_nodes_data, separators=(",", ":")))
        in_process = _in_process_eval(checker.last_nodes_data, repeat)
        checker.close()
        db.close()
    return {
        "nodes": nodes,
        "gpus_per_node": gpus,
        "repeat": repeat,
        "nodes_data_json_mb": round(runs[0]["nodes_data_json_bytes"] / 1e6, 1),
        **{f"median_{k}_s": round(statistics.median(r[k] for r in runs), 4)
           for k in ("nodes_data", "policy_eval", "store", "total")},
        "median_policy_eval_in_process_s": in_process,
    }


def _in_process_eval(nodes_data: list[dict], repeat: int) -> float:
    """The same default policy called directly, no worker: what the JSON trip costs by difference."""
    import importlib.util

    from aggregator.stability.checker import DEFAULT_POLICY_DIR

    spec = importlib.util.spec_from_file_location("default_policy", DEFAULT_POLICY_DIR / "code" / "function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule = module.AIOSv1PolicyRule("", {}, None)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rule.eval(None, {"cluster_data": {}, "cluster": {}, "nodes_data": nodes_data}, {})
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4)


def xid_latency(repeat: int, agent_interval_s: float, debounce_s: float) -> dict:
    """From writing an XID into an agent's fake NVML to the stored unstable verdict."""
    import asyncio
    import threading

    from aggregator.service import Aggregator, ServeConfig
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm
    from tests.support.telemetry import TOKEN, AgentProcess

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        agg = Aggregator(ServeConfig(db_path=tmp / "aggregator.sqlite", tokens=(TOKEN,), grpc_port=0, http_port=None,
                                     host="127.0.0.1", cluster_id="bench", status_every_s=0.5, commit_interval_s=0.05))
        asyncio.run_coroutine_threadsafe(agg.start(), loop).result(30)
        checker = StabilityChecker(
            cluster_id="bench", registry=agg.registry, cluster_store=ClusterStore(agg.db), verdicts=VerdictStore(agg.db),
            open_policy=policy_opener(PolicyConfig(cache_dir=tmp / "cache")), interval_s=3600, debounce_s=debounce_s,
        )
        unstable_at: list[float] = []
        seen = threading.Event()

        def on_verdict(verdict):
            if verdict.outcome == "unstable" and not seen.is_set():
                unstable_at.append(time.perf_counter())
                seen.set()

        health_at: list[float] = []

        def on_change(change):  # the health event reaching the registry
            if change.kind == "health" and change.health is not None and change.health.xid == 79 and not health_at:
                health_at.append(time.perf_counter())

        agg.registry.subscribe(on_change)
        checker.on_verdict(on_verdict)
        checker.start()
        nvml = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "nvml.conf").configure(gpus=[h100_sxm(i) for i in range(8)])
        agent = AgentProcess(tmp, "bench-node", f"127.0.0.1:{agg.grpc.port}", interval_s=agent_interval_s, env=nvml.env)
        latencies, aggregator_side, to_registry = [], [], []
        try:
            deadline = time.monotonic() + 60
            while not (agg.registry.get("bench-node") and agg.registry.get("bench-node").latest):
                if time.monotonic() > deadline:
                    raise SystemExit("the agent never reported")
                time.sleep(0.05)
            for i in range(repeat):
                assert checker.check("bench").outcome == "stable"
                seen.clear()
                unstable_at.clear()
                health_at.clear()
                t0 = time.perf_counter()
                nvml.inject_xid(i % 8, 79)
                if not seen.wait(30):
                    raise SystemExit("no unstable verdict within 30 s")
                latencies.append(unstable_at[0] - t0)
                aggregator_side.append(unstable_at[0] - health_at[0])
                to_registry.append(health_at[0] - t0)
                checker.management("acknowledge", {})
        finally:
            agent.stop()
            checker.close()
            asyncio.run_coroutine_threadsafe(agg.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    return {
        "repeat": repeat,
        "agent_interval_s": agent_interval_s,
        "debounce_s": debounce_s,
        "median_xid_to_unstable_verdict_s": round(statistics.median(latencies), 3),
        "max_xid_to_unstable_verdict_s": round(max(latencies), 3),
        "median_xid_to_registry_s": round(statistics.median(to_registry), 3),
        "max_xid_to_registry_s": round(max(to_registry), 3),
        "median_health_event_at_registry_to_verdict_s": round(statistics.median(aggregator_side), 3),
        "max_health_event_at_registry_to_verdict_s": round(max(aggregator_side), 3),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency-only", action="store_true", help="only the XID-to-verdict latency")
    parser.add_argument("--agent-interval", type=float, default=10.0, help="agent sampling interval (10 s, the default)")
    parser.add_argument("--debounce", type=float, default=0.2, help="checker debounce after a node change (0.2 s)")
    args = parser.parse_args(argv)
    if not args.latency_only:
        print(json.dumps(full_check(args.nodes, args.gpus, args.repeat), indent=2))
    print(json.dumps(xid_latency(args.repeat, args.agent_interval, args.debounce), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
