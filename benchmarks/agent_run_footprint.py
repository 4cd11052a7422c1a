"""Benchmark: RSS and CPU of the whole agent (`aios-agent run`) as the DaemonSet runs it.

One `aios-agent run` subprocess over the fake NVML (8 H100s), streaming to a
real aggregator (in this process), serving /metrics and /healthz, with the
Node annotator on (kmock's Kubernetes API on loopback, through a kubeconfig)
and off (no Kubernetes API configured), each with glibc's default malloc
arenas and with `MALLOC_ARENA_MAX=2`. `--compare-with DIR` adds the same
annotator on/off runs of the agent code in DIR (another checkout, e.g.
`git worktree add /tmp/base <rev>`), so a change is measured side by side.
The variants run interleaved, `--repeat` rounds, medians reported. After a
warm-up the agent's VmRSS (and its anonymous/file-backed split) is read from
/proc, and its CPU time over a window is divided by the window.

    python benchmarks/agent_run_footprint.py [--interval 10] [--window 30] [--repeat 3] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakenvml import FakeNvml, build_fake_nvml  # noqa: E402
from tests.fakenvml.presets import h100_sxm  # noqa: E402
from tests.support.kube_api import KubeApiServer  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.telemetry import AgentProcess, AggregatorThread  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


@dataclass(frozen=True)
class Variant:
    code: str  # "this" or the --compare-with directory
    annotator: bool
    arena_max: str | None  # MALLOC_ARENA_MAX, None: glibc's default (8 per core)

    def launcher(self) -> tuple[str, ...]:
        """What follows the interpreter: this checkout's CLI, or the one in `code`."""
        if self.code == "this":
            return ("-m", "agent.cli")
        return ("-c", f"import sys; sys.path.insert(0, {self.code!r}); from agent.cli import main; sys.exit(main())")


def _proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _mib(status: dict[str, str], key: str) -> float:
    return round(int(status[key].split()[0]) / 1024, 1)


def one_run(tmp: Path, nvml: FakeNvml, variant: Variant, *, interval_s: float, window_s: float) -> dict:
    kube = KubeApiServer(tmp) if variant.annotator else None
    aggregator = AggregatorThread(tmp)
    port = free_port()
    env = {**nvml.env, "AIOS_METRICS_PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1",
           "KUBECONFIG": str(kube.kubeconfig) if kube else str(tmp / "no-kubeconfig")}
    if variant.arena_max is not None:
        env["MALLOC_ARENA_MAX"] = variant.arena_max
    node = "bench-node"
    if kube:
        kube.put_node(f"{node}-name")
    agent = AgentProcess(tmp, node, aggregator.address, interval_s=interval_s, env=env, launcher=variant.launcher())
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
                 timeout_s=60, what="/healthz")
        wait_for(lambda: aggregator.aggregator.registry.get(node), timeout_s=60, what="the node at the aggregator")
        if kube:
            kube.wait_for(lambda: kube.requests("PATCH"), timeout_s=60, what="the Node's annotation")
        time.sleep(min(5.0, window_s))  # warm-up: a few samples
        cpu0, t0 = _cpu_s(agent.proc.pid), time.monotonic()
        time.sleep(window_s)
        cpu = (_cpu_s(agent.proc.pid) - cpu0) / (time.monotonic() - t0)
        status = _proc_status(agent.proc.pid)
        return {
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


def _medians(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=10.0, help="agent sampling interval (10 s, the default)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of CPU measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all variants, interleaved (3)")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="another checkout of the agent to measure side by side (annotator on/off)")
    args = parser.parse_args(argv)
    variants = [Variant("this", annotator, arena_max) for annotator in (True, False) for arena_max in (None, "2")]
    if args.compare_with is not None:
        variants += [Variant(str(args.compare_with.resolve()), annotator, None) for annotator in (True, False)]
    runs: dict[Variant, list[dict]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nvml = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "nvml.conf").configure(gpus=[h100_sxm(i) for i in range(8)])
        for round_index in range(args.repeat):
            for number, variant in enumerate(variants):
                run_dir = tmp / f"round{round_index}-variant{number}"
                run_dir.mkdir()
                runs[variant].append(one_run(run_dir, nvml, variant, interval_s=args.interval, window_s=args.window))
    summary = [{"code": variant.code, "annotator": variant.annotator, "malloc_arena_max": variant.arena_max,
                "median": _medians(variant_runs), "rss_mib_each": [run["rss_mib"] for run in variant_runs]}
               for variant, variant_runs in runs.items()]
    print(json.dumps({"interval_s": args.interval, "window_s": args.window, "repeat": args.repeat,
                      "variants": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
