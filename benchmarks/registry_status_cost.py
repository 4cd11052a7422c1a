"""CPU cost of `NodeRegistry.record_sample`, which re-judges the node's health on every message.

Usage:  python benchmarks/registry_status_cost.py [--runs 7] [--calls 20000]

One node with 8 GPUs; the registry holds 0 or 50 (its maximum) health events,
which the health rule (`proto/health/gpu_rule.py`) walks on each call. CPU time
of this process per call, median of the runs. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.telemetry.model import SampleFigures
from aggregator.telemetry.registry import NodeRegistry
from proto.telemetry.v1.readings import HealthEvent, NodeSample
from tests.support.telemetry import inventory

NOW = 1_764_400_000.0


def per_call_us(held_events: int, runs: int, calls: int) -> float:
    registry = NodeRegistry(clock=lambda: NOW, decode_sample=lambda wire: NodeSample(timestamp=NOW, host=None))
    registry.hello("n1", cluster_id="c", agent_version="v", agent_instance="i", inventory=inventory("n1", 8), interval_s=10)
    for k in range(held_events):  # old application-level XIDs: walked, none open a problem
        registry.record_health("n1", k + 1, HealthEvent("xid", NOW - 1000 + k, gpu_index=k % 8, xid=13))
    seq = held_events
    results = []
    for _ in range(runs):
        start = time.process_time()
        for i in range(calls):
            seq += 1
            registry.record_sample("n1", seq, SampleFigures(NOW + i), b"x")
        results.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    print("| events held | record_sample, CPU us (median) |\n|---:|---:|")
    for held in (0, 50):
        print(f"| {held} | {per_call_us(held, args.runs, args.calls):.2f} |")


if __name__ == "__main__":
    main()
