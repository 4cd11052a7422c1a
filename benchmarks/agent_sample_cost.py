"""CPU time per full agent sample (host + 8 fake GPUs) at ~100 and ~1,000 processes, and RSS.

Usage:  python benchmarks/agent_sample_cost.py [--samples 400] [--old-samples 40]

For each process count it spawns sleeping children until the machine has
about that many processes, then runs a worker subprocess under the fake NVML
(the test suite's `libnvidia-ml.so.1`, compiled here; 8 H100s) that:
  - times `NodeReader.sample()` (CPU time of the process: `time.process_time`,
    so the GPU collector's threads count too), many times, back to back;
  - times, in the same run and interleaved, the old daemon's approach from
    design.md: two `psutil.process_iter()` walks and two `psutil.pids()` per
    sample (reading name, status, CPU and memory of every process);
  - reports its RSS after imports and after opening the reader and warming up.
Prints a JSON line per process count and a Markdown table at the end.
Figures, not assertions: run it on a quiet machine and compare side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = (100, 1000)


# ---------------------------------------------------------------- worker


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _old_walk(psutil) -> int:
    """What the old daemon did per sample: pids() twice, process_iter() twice."""
    seen = 0
    for _ in range(2):
        psutil.pids()
        for proc in psutil.process_iter(["name", "status", "cpu_percent", "memory_info"]):
            seen += proc.info["name"] is not None
    return seen


def _summary(values_ms: list[float]) -> dict:
    values = sorted(values_ms)
    q = statistics.quantiles(values, n=10) if len(values) >= 10 else [values[0]] * 9
    return {
        "median_ms": round(statistics.median(values), 4),
        "p10_ms": round(q[0], 4),
        "p90_ms": round(q[8], 4),
        "n": len(values),
    }


def worker(samples: int, old_samples: int) -> None:
    rss_start = _rss_mib()
    import psutil

    from agent.gpu.collector import open_gpu_collector
    from agent.host.collector import PsutilHostCollector
    from agent.sampling.node_reader import NodeReader

    rss_imports = _rss_mib()
    # what open_node_reader builds, kept apart so each half can be timed too
    host, gpu = PsutilHostCollector(root="/"), open_gpu_collector()
    reader = NodeReader("bench", "bench", gpu, host)
    inventory = reader.inventory()
    for _ in range(20):  # warm-up: rates known, caches filled, the first /proc listing done
        reader.sample()
    rss_warm = _rss_mib()

    new_ms: list[float] = []
    host_ms: list[float] = []
    gpu_ms: list[float] = []
    old_ms: list[float] = []
    old_every = max(1, samples // max(1, old_samples))
    for i in range(samples):
        start = time.process_time()
        sample = reader.sample()
        new_ms.append((time.process_time() - start) * 1000)
        for collector, into in ((host, host_ms), (gpu, gpu_ms)):
            start = time.process_time()
            collector.sample()
            into.append((time.process_time() - start) * 1000)
        if i % old_every == 0 and len(old_ms) < old_samples:
            start = time.process_time()
            _old_walk(psutil)
            old_ms.append((time.process_time() - start) * 1000)
    rss_after = _rss_mib()

    start = time.process_time()
    for _ in range(20):
        processes = sum(map(str.isdigit, os.listdir("/proc")))
    listing_ms = (time.process_time() - start) * 1000 / 20

    reader.close()
    print(
        json.dumps(
            {
                "gpus": len(inventory.gpus),
                "gpu_samples": len(sample.gpus),
                "processes": processes,
                "threads": sample.host.threads_total if sample.host else None,
                "collectors_ok": all(c.success for c in sample.collectors),
                "new": _summary(new_ms),
                "host_only": _summary(host_ms),
                "gpu_only": _summary(gpu_ms),
                "old": _summary(old_ms),
                "proc_listing_ms": round(listing_ms, 4),
                "rss_mib": {
                    "interpreter": round(rss_start, 1),
                    "after_imports": round(rss_imports, 1),
                    "after_warmup": round(rss_warm, 1),
                    "after_run": round(rss_after, 1),
                },
            }
        )
    )


# ---------------------------------------------------------------- driver


def _process_count() -> int:
    return sum(map(str.isdigit, os.listdir("/proc")))


def _fake_nvml_env(workdir: Path) -> dict[str, str]:
    sys.path.insert(0, str(REPO))
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm

    lib_dir = build_fake_nvml(workdir / "lib")
    fake = FakeNvml(lib_dir, workdir / "fake-nvml.conf")
    fake.configure(gpus=[h100_sxm(i) for i in range(8)])
    return fake.env


def run_at(target: int, env: dict[str, str], samples: int, old_samples: int) -> dict:
    children = []
    try:
        missing = max(0, target - _process_count())
        for _ in range(missing):
            children.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL))
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", "--samples", str(samples), "--old-samples", str(old_samples)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed at {target} processes:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["target"] = target
        return result
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def table(results: list[dict]) -> str:
    rows = [
        "| processes (threads) | full sample (host + 8 GPUs): median [p10-p90] ms | host only | 8 GPUs only "
        "| old: process_iter walk, median [p10-p90] ms | old / full sample | /proc listing (every 30 s) ms "
        "| RSS after imports / warm-up / run MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        new, old, rss = r["new"], r["old"], r["rss_mib"]
        rows.append(
            f"| {r['processes']} ({r['threads']}) | {new['median_ms']:.3f} [{new['p10_ms']:.3f}-{new['p90_ms']:.3f}] "
            f"| {r['host_only']['median_ms']:.3f} | {r['gpu_only']['median_ms']:.3f} "
            f"| {old['median_ms']:.2f} [{old['p10_ms']:.2f}-{old['p90_ms']:.2f}] "
            f"| {old['median_ms'] / new['median_ms']:.0f}x | {r['proc_listing_ms']:.3f} "
            f"| {rss['after_imports']} / {rss['after_warmup']} / {rss['after_run']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--old-samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the process counts this many times")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.samples, args.old_samples)
        return
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp:
        env = _fake_nvml_env(Path(tmp))
        results = []
        for target in TARGETS * args.rounds:
            result = run_at(target, env, args.samples, args.old_samples)
            print(json.dumps(result), flush=True)
            results.append(result)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
