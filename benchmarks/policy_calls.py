"""Policy call cost through a local-mode worker process.

    python benchmarks/policy_calls.py [--calls 3000] [--nodes 5000] [--repeats 15]

1. calls/s for a trivial governance policy (small input, allowed + input back),
   through the worker vs. the same class called in-process (the floor);
2. latency of one stability evaluation whose input holds N nodes_data entries
   (contracts.md §5 shape, 8 GPUs each), through the worker vs. in-process.
Prints a markdown table; medians, side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.policies import PolicyConfig, open_policy

TRIVIAL = """
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        pass

    def eval(self, parameters, input_data, context):
        return {"allowed": True, "input_data": input_data}
"""

STABILITY = """
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.max_gpu_util = parameters.get("max_gpu_util", 95)

    def eval(self, parameters, input_data, context):
        nodes = input_data["nodes_data"]
        healthy = [n for n in nodes if n["status"] == "healthy"]
        hot = sum(1 for n in nodes for g in n["gpus"] if g["utilization"] > self.max_gpu_util)
        return {"is_stable": len(healthy) == len(nodes) and hot == 0,
                "stability_check_data": {"healthy": len(healthy), "total": len(nodes), "hot_gpus": hot}}
"""


def nodes_data(count: int) -> list[dict]:
    return [
        {
            "node_id": f"node-{i:05d}",
            "status": "healthy",
            "cpu_utilization_percent": 37.5,
            "memory": {"total": 2_063_731, "allocatable": 1_900_000, "usage_percent": 41.2},
            "disk": {"total": 7_629_395, "allocatable": 7_000_000, "usage_percent": 12.9},
            "gpus": [
                {"id": f"GPU-{i:05d}-{g}", "utilization": 63.0 + g, "memory": {"total": 81_559, "usage_percent": 55.5}}
                for g in range(8)
            ],
        }
        for i in range(count)
    ]


def _package(root: Path, name: str, source: str) -> Path:
    code = root / name / "code"
    code.mkdir(parents=True)
    (code / "function.py").write_text(source)
    return root / name


def _in_process(package: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{package.name}", package / "code" / "function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AIOSv1PolicyRule("", {}, {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = PolicyConfig(cache_dir=root / "cache", call_timeout_s=60, memory_limit_mb=2048)
        trivial_pkg, stability_pkg = _package(root, "trivial", TRIVIAL), _package(root, "stability", STABILITY)
        small = {"node_data": {"id": "node-00001", "gpus": {"count": 8}}, "cluster_data": {"id": "c1"}}

        started = time.perf_counter()
        handle = open_policy(str(trivial_pkg), config=config)
        load_s = time.perf_counter() - started
        with handle:
            for _ in range(200):
                handle.eval(small)
            rates = []
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    handle.eval(small)
                rates.append(args.calls / (time.perf_counter() - t0))
        direct = _in_process(trivial_pkg)
        t0 = time.perf_counter()
        for _ in range(args.calls * 10):
            direct.eval({}, small, {})
        direct_rate = args.calls * 10 / (time.perf_counter() - t0)

        big = {"cluster_data": {"id": "c1"}, "nodes_data": nodes_data(args.nodes)}
        big["cluster"] = big["cluster_data"]
        payload_mb = len(json.dumps(big)) / (1024 * 1024)
        with open_policy(str(stability_pkg), config=config) as handle:
            handle.eval(big)
            worker_ms = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = handle.eval(big)
                worker_ms.append((time.perf_counter() - t0) * 1000)
        assert result["stability_check_data"]["total"] == args.nodes
        direct = _in_process(stability_pkg)
        direct_ms = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            direct.eval({}, big, {})
            direct_ms.append((time.perf_counter() - t0) * 1000)
        dumps_ms, loads_ms = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            text = json.dumps(big, allow_nan=False, separators=(",", ":"))
            t1 = time.perf_counter()
            json.loads(text)
            t2 = time.perf_counter()
            dumps_ms.append((t1 - t0) * 1000)
            loads_ms.append((t2 - t1) * 1000)

    worker_rate = statistics.median(rates)
    print(f"policy worker start + load: {load_s * 1000:.0f} ms")
    print()
    print("| measure | through worker | in-process | ratio |")
    print("|---|---|---|---|")
    print(f"| trivial policy, calls/s (median of 3 x {args.calls}) | {worker_rate:,.0f} | {direct_rate:,.0f} "
          f"| {direct_rate / worker_rate:,.0f}x |")
    wm, dm = statistics.median(worker_ms), statistics.median(direct_ms)
    print(f"| one eval, {args.nodes} nodes x 8 GPUs ({payload_mb:.1f} MB JSON), ms (median of {args.repeats}) "
          f"| {wm:.1f} | {dm:.1f} | {wm / dm:.0f}x |")
    print(f"| reference: json.dumps of that input in this process, ms | {statistics.median(dumps_ms):.1f} | | |")
    print(f"| reference: json.loads of that input in this process, ms | {statistics.median(loads_ms):.1f} | | |")


if __name__ == "__main__":
    main()
