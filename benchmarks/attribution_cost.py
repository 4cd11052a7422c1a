"""What "who is on the GPU" costs the agent: 8 GPUs x 64 processes, 200 pods, attribution on vs off.

Usage:  python benchmarks/attribution_cost.py [--samples 300] [--rounds 3]

The driver builds the fake NVML (the test suite's `libnvidia-ml.so.1`, 8 H100s,
64 compute processes each with memory and per-process utilization that moves
at every query), a kubelet pod-resources stand-in on a unix socket (real
gRPC) listing 200 pods (8 of them hold one GPU each, the others none), and a
fixture host root whose /proc/<pid>/cgroup files put each GPU's processes in
its pod's container (cgroup v2, containerd). Then, `--rounds` times, a
worker subprocess with `AIOS_ATTRIBUTION=off` and one with it on, one after
the other; each opens the reader as `aios-agent run` does
(`open_node_reader`), warms up, and measures in CPU time
(`time.process_time`, every thread of the process: the GPU collector's
per-GPU workers too):

  - `sample`: one full `NodeReader.sample()` (host + 8 GPUs [+ attribution]);
  - `scrape`: one `/metrics` exposition of that sample (`generate_latest` of
    the agent's registry, as a scrape runs it), and its size;
  - `wire`: the sample's conversion to protobuf and serialization (the
    stream's share), and its size;
  - with attribution on, `kubelet_read` (List + GetAllocatableResources of the
    200 pods) and `cgroup_reads` (the 512 processes' cgroup files, what a GPU
    whose every process is new costs once).

`--compare-with DIR` (another checkout, e.g. main before attribution) also
times, in a worker running that checkout's code, the `/metrics` scrape of
the very same sample (sent to it in its wire form, whose new fields it does
not know): "today's" scrape beside ours.

Prints a JSON line per worker and a Markdown table of medians and ratios.
Figures, not assertions: compare side by side on a quiet machine.
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
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPUS, PROCESSES_PER_GPU, PODS = 8, 64, 200


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 4)


# ---------------------------------------------------------------- worker


def _measure(reader, state, registry, samples: int) -> dict:
    """A block of samples back to back (as agent_sample_cost.py times them), then as many
    scrapes and wire conversions of the last one (each costs garbage of its own, which
    would otherwise be collected during, and charged to, the next sample)."""
    from prometheus_client import generate_latest

    from proto.telemetry.v1.convert import sample_to_pb

    sample_s, scrape_s, wire_s = [], [], []
    for _ in range(samples):
        start = time.process_time()
        sample = reader.sample()
        sample_s.append(time.process_time() - start)
    state.observe_sample(sample)
    for _ in range(samples):
        start = time.process_time()
        text = generate_latest(registry)
        scrape_s.append(time.process_time() - start)
    for _ in range(samples):
        start = time.process_time()
        wire = sample_to_pb(sample).SerializeToString()
        wire_s.append(time.process_time() - start)
    return {
        "sample": sample,
        "sample_s": sample_s,
        "scrape_s": scrape_s,
        "wire_s": wire_s,
        "scrape_bytes": len(text),
        "wire_bytes": len(wire),
    }


def scrape_worker(wire_dir: str, samples: int) -> None:
    """Time the scrape of a recorded sample with whatever code is on sys.path (another checkout)."""
    from prometheus_client import generate_latest

    from agent.metrics import AgentMetricsProviders, AgentMetricsState, build_agent_registry
    from proto.telemetry.v1 import convert
    from proto.telemetry.v1 import telemetry_pb2 as pb

    inventory = convert.inventory_from_pb(pb.NodeInventory.FromString(Path(wire_dir, "inventory.pb").read_bytes()))
    sample = convert.sample_from_pb(pb.NodeSample.FromString(Path(wire_dir, "sample.pb").read_bytes()))
    state = AgentMetricsState()
    state.record(inventory, sample)
    registry = build_agent_registry(AgentMetricsProviders(state.readings), process_metrics=False)
    times = []
    for _ in range(samples):
        start = time.process_time()
        text = generate_latest(registry)
        times.append(time.process_time() - start)
    print(json.dumps({"mode": "compare", "scrape_ms": _median_ms(times), "scrape_bytes": len(text)}))


def worker(samples: int, mode: str) -> None:
    """One reader, as the agent has it (the GPU collector's per-GPU worker threads included:
    two readers in one process would contend for the GIL and inflate both)."""
    from agent.metrics import AgentMetricsProviders, AgentMetricsState, build_agent_registry
    from agent.sampling.node_reader import open_node_reader

    root = os.environ["AIOS_HOST_ROOT"]
    env = {**os.environ, "AIOS_ATTRIBUTION": mode}
    reader = open_node_reader(node_id="bench", node_name="bench", host_root=root, environ=env)
    state = AgentMetricsState()
    state.set_inventory(reader.inventory())
    registry = build_agent_registry(AgentMetricsProviders(state.readings), process_metrics=False)
    for _ in range(20):  # warm-up: rates known, caches filled, the kubelet read once
        state.observe_sample(reader.sample())
    measured = _measure(reader, state, registry, samples)
    sample = measured["sample"]
    result = {
        "mode": mode,
        "processes": sum(len(g.processes) for g in sample.gpus),
        "owners_named": sum(1 for o in sample.attribution.owners if o.pod) if sample.attribution else 0,
        "collectors_ok": all(c.success for c in sample.collectors),
        "sample_ms": _median_ms(measured["sample_s"]),
        "scrape_ms": _median_ms(measured["scrape_s"]),
        "scrape_bytes": measured["scrape_bytes"],
        "wire_ms": _median_ms(measured["wire_s"]),
        "wire_bytes": measured["wire_bytes"],
    }
    if mode == "on":
        result.update(_refresh_costs(root, sample))
        _record_wire(reader, sample)
    print(json.dumps(result))
    reader.close()


def _record_wire(reader, sample) -> None:
    """The inventory and the attributed sample in their wire form, for --compare-with."""
    from proto.telemetry.v1.convert import inventory_to_pb, sample_to_pb

    wire_dir = os.environ.get("AIOS_BENCH_WIRE_DIR")
    if wire_dir:
        Path(wire_dir, "inventory.pb").write_bytes(inventory_to_pb(reader.inventory()).SerializeToString())
        Path(wire_dir, "sample.pb").write_bytes(sample_to_pb(sample).SerializeToString())


def _refresh_costs(root: str, sample) -> dict:
    """What a kubelet read and a whole GPU of new processes cost, when they happen."""
    from agent.attribution.attributor import read_cgroup
    from agent.attribution.pod_resources import PodResourcesClient

    client = PodResourcesClient(os.environ["AIOS_POD_RESOURCES_SOCKET"])
    reads = []
    for _ in range(30):
        start = time.process_time()
        client.read()
        reads.append(time.process_time() - start)
    client.close()
    pids = [p.pid for g in sample.gpus for p in g.processes]
    cgroups = []
    for _ in range(10):
        start = time.process_time()
        for pid in pids:
            read_cgroup(root, pid)
        cgroups.append(time.process_time() - start)
    return {"kubelet_read_ms": _median_ms(reads), "cgroup_reads_ms": _median_ms(cgroups)}


# ---------------------------------------------------------------- driver


def _setup(workdir: Path):
    sys.path.insert(0, str(REPO))
    from tests.fakenvml import FakeNvml, FakeProcess, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm
    from tests.support.cgroups import write_proc_cgroups
    from tests.support.hostfs import Counters, write_host_tree
    from tests.support.pod_resources import PodResourcesServer, container, devices, pod

    gpus, cgroups, pods = [], {}, []
    for i in range(GPUS):
        gpu = h100_sxm(i)
        uid = f"{i:08x}-0000-4000-8000-{i:012x}"
        cid = f"{i:02x}" * 32
        procs = []
        for k in range(PROCESSES_PER_GPU):
            pid = 10_000 + i * 100 + k
            procs.append(FakeProcess(pid, "c", 256 + k, sm_pct=k % 90, mem_pct=k % 40))
            cgroups[pid] = (
                "0::/kubepods.slice/kubepods-burstable.slice/"
                f"kubepods-burstable-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope\n"
            )
        gpus.append(replace(gpu, processes=tuple(procs), util_jitter=True))
        pods.append(pod("train", f"job-{i}", container("worker", devices("nvidia.com/gpu", gpu.uuid))))
    for n in range(PODS - GPUS):
        pods.append(pod(f"team-{n % 20}", f"web-{n}", container("app"), container("sidecar")))
    fake = FakeNvml(build_fake_nvml(workdir / "lib"), workdir / "fake-nvml.conf")
    fake.configure(gpus=gpus)
    root = write_proc_cgroups(write_host_tree(workdir / "host", Counters()), cgroups)
    server = PodResourcesServer(str(workdir / "kubelet.sock"))
    server.set_pods(*pods)
    server.set_allocatable(devices("nvidia.com/gpu", *(g.uuid for g in gpus)))
    return fake.env, root, server


def run_worker(env: dict[str, str], samples: int, mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--samples", str(samples)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_compare(code: Path, wire_dir: Path, samples: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--scrape-worker", str(wire_dir), "--samples", str(samples)],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compare worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    off = [r for r in results if r["mode"] == "off"]
    on = [r for r in results if r["mode"] == "on"]
    compare = [r for r in results if r["mode"] == "compare"]

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    rows = [
        "| attribution | full sample ms | /metrics scrape ms (bytes) | wire: to protobuf + serialize ms (bytes) "
        "| kubelet read (200 pods) ms | 512 cgroup reads ms |",
        "|---|---:|---:|---:|---:|---:|",
        f"| off | {med(off, 'sample_ms'):.3f} | {med(off, 'scrape_ms'):.3f} ({med(off, 'scrape_bytes'):.0f}) "
        f"| {med(off, 'wire_ms'):.3f} ({med(off, 'wire_bytes'):.0f}) | | |",
        f"| on | {med(on, 'sample_ms'):.3f} | {med(on, 'scrape_ms'):.3f} ({med(on, 'scrape_bytes'):.0f}) "
        f"| {med(on, 'wire_ms'):.3f} ({med(on, 'wire_bytes'):.0f}) | {med(on, 'kubelet_read_ms'):.3f} "
        f"| {med(on, 'cgroup_reads_ms'):.3f} |",
        f"| on / off | {med(on, 'sample_ms') / med(off, 'sample_ms'):.2f}x "
        f"| {med(on, 'scrape_ms') / med(off, 'scrape_ms'):.2f}x | {med(on, 'wire_ms') / med(off, 'wire_ms'):.2f}x | | |",
    ]
    if compare:
        rows.append(
            f"| the --compare-with checkout, the same sample | | {med(compare, 'scrape_ms'):.3f} "
            f"({med(compare, 'scrape_bytes'):.0f}) | | | |"
        )
        rows.append(f"| on / the --compare-with checkout | | {med(on, 'scrape_ms') / med(compare, 'scrape_ms'):.2f}x | | | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-with", type=Path, default=None, help="another checkout: time its scrape too")
    parser.add_argument("--worker", choices=("off", "on"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scrape-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.samples, args.worker)
        return
    if args.scrape_worker:
        scrape_worker(args.scrape_worker, args.samples)
        return
    with tempfile.TemporaryDirectory(prefix="aios-attr-") as tmp:
        nvml_env, root, server = _setup(Path(tmp))
        base = {
            **nvml_env,
            "AIOS_HOST_ROOT": str(root),
            "AIOS_POD_RESOURCES_SOCKET": server.socket_path,
            "AIOS_BENCH_WIRE_DIR": tmp,
        }
        results = []
        with server:
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    result = run_worker(base, args.samples, mode)
                    print(json.dumps(result), flush=True)
                    results.append(result)
                if args.compare_with is not None:
                    result = run_compare(args.compare_with.resolve(), Path(tmp), args.samples)
                    print(json.dumps(result), flush=True)
                    results.append(result)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
