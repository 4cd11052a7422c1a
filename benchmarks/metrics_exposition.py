"""Cost of one Prometheus scrape: the agent (8 GPUs) and the aggregator at 10..1,000 nodes.

Usage:  python benchmarks/metrics_exposition.py [--repeat 30]

Times `generate_latest(registry)` (what a scrape runs; the HTTP server adds
its own small cost) with CPU time of this process (`time.process_time`), and
reports the exposition's size. The aggregator is measured cluster-only and
with `per_node=True` at the same node counts, interleaved, so the two can be
compared side by side. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest

from agent.metrics import AgentMetricsProviders, AgentMetricsState, StreamStatus, build_agent_registry
from aggregator.telemetry.metrics import AggregatorMetricsProviders, StabilityVerdict, build_aggregator_registry
from aggregator.telemetry.model import NodeState
from proto.telemetry.v1.readings import MIB, GpuInventory, NodeInventory, NodeSample
from tests.metrics_fixtures.readings import GPU0, HOST, INVENTORY, SAMPLE_1

NODE_COUNTS = (10, 100, 1000)


def eight_gpu_node(node_id: str) -> tuple[NodeInventory, NodeSample]:
    gpus_inv = tuple(
        GpuInventory(i, f"GPU-{node_id}-{i}", "NVIDIA H100 80GB HBM3", 81_559 * MIB, f"00000000:{i:02X}:00.0", (9, 0), "hopper")
        for i in range(8)
    )
    inventory = replace(INVENTORY, node_id=node_id, node_name=node_id, gpus=gpus_inv)
    sample = NodeSample(
        timestamp=1_790_000_000.0,
        host=HOST,
        gpus=tuple(replace(GPU0, index=i, uuid=f"GPU-{node_id}-{i}") for i in range(8)),
        collectors=SAMPLE_1.collectors,
    )
    return inventory, sample


def time_scrape(registry, repeat: int) -> tuple[float, int]:
    generate_latest(registry)  # warm
    times = []
    for _ in range(repeat):
        start = time.process_time()
        body = generate_latest(registry)
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times), len(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rows = []

    inventory, sample = eight_gpu_node("node-0")
    state = AgentMetricsState()
    state.record(inventory, sample)
    agent = build_agent_registry(AgentMetricsProviders(state.readings, stream=lambda: StreamStatus(True)), process_metrics=False)
    ms, size = time_scrape(agent, args.repeat)
    rows.append({"what": "agent, 8 GPUs", "median_ms": round(ms, 3), "bytes": size})

    for count in NODE_COUNTS:
        nodes = []
        for n in range(count):
            inv, smp = eight_gpu_node(f"node-{n}")
            nodes.append(NodeState(f"node-{n}", "healthy", inv, smp, 1.0, 0.0, samples_received=10))
        for per_node in (False, True):
            registry = build_aggregator_registry(
                AggregatorMetricsProviders(
                    lambda nodes=nodes: nodes, "c", lambda: StabilityVerdict(True, 1.0), lambda: 0, per_node=per_node
                ),
                process_metrics=False,
            )
            ms, size = time_scrape(registry, max(3, args.repeat // (count // 10 or 1)))
            label = "per-node" if per_node else "cluster only"
            rows.append({"what": f"aggregator, {count} nodes x 8 GPUs, {label}", "median_ms": round(ms, 3), "bytes": size})

    for row in rows:
        print(json.dumps(row))
    print("\n| scrape | CPU ms (median) | exposition bytes |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['what']} | {row['median_ms']} | {row['bytes']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
