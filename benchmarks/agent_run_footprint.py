"""Benchmark: RSS and CPU of the whole agent (`aios-agent run`) as the DaemonSet runs it.

One `aios-agent run` subprocess over the fake NVML (8 H100s), streaming to a
real aggregator (in this process), serving /metrics and /healthz, with the
Node annotator on (kmock's Kubernetes API on loopback, through a kubeconfig)
and off (no Kubernetes API configured), each with glibc's default malloc
arenas and with `MALLOC_ARENA_MAX=2` (the DaemonSet's setting). The variants
run interleaved, `--repeat` rounds, medians reported. After a warm-up the
agent's VmRSS (and its anonymous/file-backed split) is read from /proc, and
its CPU time over a window is divided by the window.

    python benchmarks/agent_run_footprint.py [--interval 10] [--window 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakenvml import FakeNvml, build_fake_nvml  # noqa: E402
from tests.fakenvml.presets import h100_sxm  # noqa: E402
from tests.kube_api import KubeApiServer  # noqa: E402
from tests.telemetry_support import AgentProcess, AggregatorThread, free_port, wait_for  # noqa: E402


def _proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)


def _cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _mib(status: dict[str, str], key: str) -> float:
    return round(int(status[key].split()[0]) / 1024, 1)


def one_run(tmp: Path, nvml: FakeNvml, *, annotator: bool, arena_max: str | None, interval_s: float,
            window_s: float) -> dict:
    kube = KubeApiServer(tmp) if annotator else None
    aggregator = AggregatorThread(tmp)
    port = free_port()
    env = {**nvml.env, "AIOS_METRICS_PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1",
           "KUBECONFIG": str(kube.kubeconfig) if kube else str(tmp / "no-kubeconfig")}
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = arena_max
    node = "bench-node"
    if kube:
        kube.put_node(f"{node}-name")
    agent = AgentProcess(tmp, node, aggregator.address, interval_s=interval_s, env=env)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
                 timeout_s=60, what="/healthz")
        wait_for(lambda: aggregator.aggregator.registry.get(node), timeout_s=60, what="the node at the aggregator")
        time.sleep(min(5.0, window_s))  # warm-up: a few samples, the annotation written
        cpu0, t0 = _cpu_s(agent.proc.pid), time.monotonic()
        time.sleep(window_s)
        cpu = (_cpu_s(agent.proc.pid) - cpu0) / (time.monotonic() - t0)
        status = _proc_status(agent.proc.pid)
        return {
            "annotator": annotator,
            "malloc_arena_max": arena_max,
            "rss_mib": _mib(status, "VmRSS"),
            "rss_anon_mib": _mib(status, "RssAnon"),
            "rss_file_mib": _mib(status, "RssFile"),
            "rss_peak_mib": _mib(status, "VmHWM"),
            "threads": int(status["Threads"]),
            "cpu_cores": round(cpu, 4),
        }
    finally:
        agent.stop()
        aggregator.close()
        if kube:
            kube.close()


VARIANTS = [(annotator, arena_max) for annotator in (True, False) for arena_max in (None, "2")]


def _medians(runs: list[dict]) -> dict:
    keys = ("rss_mib", "rss_anon_mib", "rss_file_mib", "rss_peak_mib", "threads", "cpu_cores")
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=10.0, help="agent sampling interval (10 s, the default)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of CPU measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all variants, interleaved (3)")
    args = parser.parse_args(argv)
    runs: dict[tuple, list[dict]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nvml = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "nvml.conf").configure(gpus=[h100_sxm(i) for i in range(8)])
        for round_index in range(args.repeat):
            for annotator, arena_max in VARIANTS:
                run_dir = tmp / f"r{round_index}-{'with' if annotator else 'without'}-{arena_max or 'default'}"
                run_dir.mkdir()
                runs[(annotator, arena_max)].append(
                    one_run(run_dir, nvml, annotator=annotator, arena_max=arena_max, interval_s=args.interval,
                            window_s=args.window))
    summary = [{"annotator": annotator, "malloc_arena_max": arena_max, "median": _medians(variant_runs),
                "rss_mib_each": [run["rss_mib"] for run in variant_runs]}
               for (annotator, arena_max), variant_runs in runs.items()]
    print(json.dumps({"interval_s": args.interval, "window_s": args.window, "repeat": args.repeat,
                      "variants": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
