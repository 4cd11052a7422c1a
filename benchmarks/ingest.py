"""Ingest benchmark: simulated agents against the aggregator and against a bare grpc.aio server.

Every scenario runs in separate processes: the server under test (the real
`aios-aggregator serve` on a SQLite file, or a bare `grpc.aio` server that
only parses, counts and acknowledges each message), and `--procs` load
generators, each multiplexing many agent streams on one asyncio loop. Each
simulated agent says hello (8-GPU inventory) and then sends an 8-GPU sample
(~1.7 KB, every field set) every interval, phases spread over the interval,
and reads the acknowledgements.

Measured per scenario, over a fixed window after all streams are up: the
server's CPU time (user+sys, from /proc via psutil) per sample received,
its CPU share, its RSS, and whether every sample sent was acknowledged (and,
for the aggregator, counted: ClusterSummary.samples_received). The ramp
raises the node count at a 1 s interval until a sample is lost, the server
uses a full core, or the step limit is reached.

    python benchmarks/ingest.py                 # ~3 minutes on 2 cores (6 s windows)
    python benchmarks/ingest.py --quick         # a smoke run (~40 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402

TOKEN = "bench-token"


# ---------------------------------------------------------------- messages


def _sample_bytes(n_gpus: int = 8) -> bytes:
    from proto.telemetry.v1 import convert
    from proto.telemetry.v1 import readings as r

    gpus = tuple(
        r.GpuSample(
            index=i, uuid=f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}", utilization_gpu_pct=87.0 + i,
            utilization_memory_pct=41.0, memory_total_bytes=81920 * r.MIB, memory_used_bytes=(40000 + i) * r.MIB,
            memory_free_bytes=(41920 - i) * r.MIB, memory_reserved_bytes=512 * r.MIB, temperature_c=61.0,
            power_draw_w=350.5, power_limit_w=400.0, sm_clock_mhz=1410,
            memory_clock_mhz=1593, throttle_reasons=("sw_power_cap",), ecc_corrected_volatile=0,
            ecc_uncorrected_volatile=0, ecc_corrected_aggregate=3, ecc_uncorrected_aggregate=0,
            retired_pages_pending=False, retired_pages_count=0, remapped_rows_pending=False,
            remapped_rows_failure=False, remapped_rows_correctable=0, remapped_rows_uncorrectable=0,
            pcie_replay_count=0, nvlinks=tuple(r.NvLinkState(k, True) for k in range(4)), compute_processes=1,
        )
        for i in range(n_gpus)
    )
    host = r.HostSample(
        cpu_percent=35.5, load1=12.0, load5=11.0, load15=10.0, memory_total_bytes=1_031_891 * r.MIB,
        memory_used_bytes=200_000 * r.MIB, memory_available_bytes=800_000 * r.MIB, swap_total_bytes=0, swap_used_bytes=0,
        page_faults_per_s=1200.0,
        disk_read_bytes_per_s=1e6, disk_write_bytes_per_s=2e6, disk_read_iops=100.0, disk_write_iops=200.0,
        disk_busy_pct=3.0, fs_total_bytes=3_000_000 * r.MIB, fs_used_bytes=1_000_000 * r.MIB,
        nics=(r.NicRate("eth0", 10**12, 2 * 10**12, 1e8, 2e8),), tx_bytes_total=10**12, rx_bytes_total=2 * 10**12,
        tx_bytes_per_s=1e8, rx_bytes_per_s=2e8, processes_total=900, processes_running=3, threads_total=5000,
    )
    sample = r.NodeSample(timestamp=time.time(), host=host, gpus=gpus,
                          collectors=(r.CollectorStatus("gpu", True, 0.004), r.CollectorStatus("host", True, 0.001)))
    return convert.sample_to_pb(sample).SerializeToString()


def _hello_bytes(node_id: str, instance: str, interval: float) -> bytes:
    from proto.telemetry.v1 import convert
    from proto.telemetry.v1 import readings as r
    from proto.telemetry.v1 import telemetry_pb2 as pb

    inv = r.NodeInventory(
        node_id=node_id, node_name=node_id,
        host=r.HostInventory(node_id, "6.1.0", "Debian 12", 128, 64, 1_031_891 * r.MIB, 0),
        gpus=tuple(r.GpuInventory(i, f"GPU-{i}", "NVIDIA H100 80GB HBM3", 81559 * r.MIB, compute_capability=(9, 0))
                   for i in range(8)),
        driver_version="550.54.15", cuda_driver_version="12.4",
    )
    return pb.AgentMessage(seq=0, hello=pb.Hello(node_id=node_id, cluster_id="bench", agent_version="bench",
                                                 agent_instance=instance, inventory=convert.inventory_to_pb(inv),
                                                 interval_s=interval)).SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _agent_message(seq: int, sample_field: bytes) -> bytes:
    # AgentMessage{seq=1 (varint), sample=3 (bytes)} written by hand: the
    # generator must stay cheap so it measures the server, not itself
    return b"\x08" + _varint(seq) + sample_field


# ---------------------------------------------------------------- roles


async def _bare_server(port: int, ready: Path) -> None:
    import grpc

    from proto.telemetry.v1 import telemetry_pb2 as pb

    count = {"messages": 0}

    async def stream(requests, context):
        async for msg in requests:
            count["messages"] += 1
            if msg.seq:
                await context.write(pb.AggregatorMessage(ack=pb.Ack(acked_seq=msg.seq)))

    # same pending-call limits as the aggregator (grpc_server.RECONNECT_STORM_OPTIONS)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("grpc.server.max_pending_requests", 20_000),
        ("grpc.server.max_pending_requests_hard_limit", 50_000),
    ])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "aios.telemetry.v1.TelemetryIngest",
        {"Stream": grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=pb.AgentMessage.FromString,
            response_serializer=pb.AggregatorMessage.SerializeToString)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    ready.write_text(json.dumps({"grpc_port": port, "pid": os.getpid()}))
    await server.wait_for_termination()


async def _agents(address: str, first: int, count: int, interval: float, run_s: float, out: Path) -> None:
    import grpc

    from proto.telemetry.v1 import telemetry_pb2 as pb

    sample = _sample_bytes()
    sample_field = b"\x1a" + _varint(len(sample)) + sample
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, count // 100))]
    stats = {"sent": 0, "acked": 0, "late_max_s": 0.0, "errors": 0, "streams": 0, "error_kinds": {},
             "retried_opens": {}}
    start_at = time.monotonic() + 2.0 + count / 2000  # all streams open before sampling
    stop_at = start_at + run_s

    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))

    async def open_stream(i: int, node: str):
        """Open the stream and say hello; a failed open is retried, as a real agent does."""
        for attempt in range(6):
            call = channels[i % len(channels)].stream_stream(
                "/aios.telemetry.v1.TelemetryIngest/Stream", request_serializer=lambda b: b,
                response_deserializer=pb.AggregatorMessage.FromString)(metadata=metadata)
            try:
                await call.write(_hello_bytes(node, f"{node}-{os.getpid()}", interval))
                return call
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                kind = f"open: {(await call.code()).name}: {await call.details()}"
                stats["retried_opens"][kind] = stats["retried_opens"].get(kind, 0) + 1
                await asyncio.sleep(random.uniform(0.1, 0.5) * 2**attempt)
        raise RuntimeError(f"{node}: could not open a stream")

    async def one(i: int) -> None:
        await asyncio.sleep(i * 1.5 / count)  # agents start over time, not in one burst
        node = f"bench-{first + i:05d}"
        acked = {"seq": 0}
        seq = 0
        phase = "open"
        call = reader = None
        try:
            call = await open_stream(i, node)

            async def read() -> None:
                try:
                    async for reply in call:
                        if reply.WhichOneof("body") == "ack":
                            acked["seq"] = max(acked["seq"], reply.ack.acked_seq)
                except grpc.aio.AioRpcError:
                    pass  # reported by the writer side

            reader = asyncio.ensure_future(read())
            stats["streams"] += 1
            t = start_at + random.random() * interval
            phase = "samples"
            while t < stop_at:
                delay = t - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    stats["late_max_s"] = max(stats["late_max_s"], -delay)
                seq += 1
                await call.write(_agent_message(seq, sample_field))
                t += interval
            phase = "acks"
            deadline = time.monotonic() + 10
            while acked["seq"] < seq and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            phase = "close"
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, RuntimeError) as e:
            stats["errors"] += 1
            kind = f"{phase}: {(await call.code()).name if call else e}"
            stats["error_kinds"][kind] = stats["error_kinds"].get(kind, 0) + 1
        finally:
            stats["sent"] += seq
            stats["acked"] += acked["seq"]
            if reader is not None:
                reader.cancel()

    await asyncio.gather(*(one(i) for i in range(count)))
    out.write_text(json.dumps(stats))
    for channel in channels:
        await channel.close()


# ---------------------------------------------------------------- the driver


def _wait_file(path: Path, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{proc.args} did not start")
        time.sleep(0.05)


def _cluster_samples(address: str) -> int:
    import grpc

    from proto.telemetry.v1 import telemetry_pb2 as pb
    from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        summary = pb_grpc.TelemetryQueryStub(channel).GetClusterSummary(
            pb.ClusterSummaryRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
    return summary.samples_received


def run_scenario(kind: str, nodes: int, interval: float, window_s: float, procs: int, tmp: Path) -> dict:
    import psutil

    port = free_port()
    address = f"127.0.0.1:{port}"
    ready = tmp / f"ready-{kind}-{nodes}-{port}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIOS_TOKEN": TOKEN}
    if kind == "aggregator":
        cmd = [sys.executable, "-m", "aggregator.cli", "--log-level", "WARNING", "serve", "--host", "127.0.0.1",
               "--grpc-port", str(port), "--http-port", "0", "--no-kubernetes", "--db", str(tmp / f"bench-{port}.db"),
               "--ready-file", str(ready)]
    else:
        cmd = [sys.executable, __file__, "--role", "bare", "--port", str(port), "--ready", str(ready)]
    server_log = open(tmp / f"server-{kind}-{port}.log", "w")  # noqa: SIM115 - the server's stdout; closed in the finally below
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        _wait_file(ready, server)
        warmup = 2.0 + nodes / 2000 + interval  # streams open, every agent has sent once
        run_s = warmup + window_s
        per = [nodes // procs + (1 if i < nodes % procs else 0) for i in range(procs)]
        outs = [tmp / f"agents-{port}-{i}.json" for i in range(procs)]
        gens = [subprocess.Popen([sys.executable, __file__, "--role", "agents", "--address", address,
                                  "--first", str(sum(per[:i])), "--count", str(per[i]), "--interval", str(interval),
                                  "--run", str(run_s), "--out", str(outs[i])], cwd=ROOT, env=env)
                for i in range(procs)]
        ps = psutil.Process(server.pid)
        time.sleep(warmup)
        t0, c0 = time.monotonic(), ps.cpu_times()
        time.sleep(window_s)
        t1, c1 = time.monotonic(), ps.cpu_times()
        rss_mb = ps.memory_info().rss / 2**20
        for g in gens:
            g.wait(timeout=run_s + 60)
        stats = [json.loads(o.read_text()) for o in outs]
        counted = _cluster_samples(address) if kind == "aggregator" else None
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        log_text = (tmp / f"server-{kind}-{port}.log").read_text()
        if log_text.strip():
            print(f"--- {kind} server log (last lines):\n" + "\n".join(log_text.splitlines()[-8:]), flush=True)
    cpu_s = (c1.user + c1.system) - (c0.user + c0.system)
    rate = nodes / interval
    sent = sum(s["sent"] for s in stats)
    acked = sum(s["acked"] for s in stats)
    result = {
        "server": kind, "nodes": nodes, "interval_s": interval, "samples_per_s": rate,
        "cpu_core_share": cpu_s / (t1 - t0), "cpu_us_per_sample": 1e6 * cpu_s / (rate * (t1 - t0)),
        "rss_mb": round(rss_mb, 1), "sent": sent, "acked": acked, "counted": counted,
        "streams_open": sum(s["streams"] for s in stats), "stream_errors": sum(s["errors"] for s in stats),
        "generator_late_max_s": round(max(s["late_max_s"] for s in stats), 3),
        "stream_error_kinds": {k: v for s in stats for k, v in s["error_kinds"].items()},
        "retried_opens": {k: v for s in stats for k, v in s["retried_opens"].items()},
    }
    result["lost"] = (sent - acked) + (0 if counted is None else sent - counted) + result["stream_errors"]
    return result


def _line(r: dict) -> str:
    return (f"{r['server']:<10} {r['nodes']:>6} nodes @ {r['interval_s']:g}s  {r['samples_per_s']:>7.0f}/s  "
            f"CPU {100 * r['cpu_core_share']:5.1f}% of a core  {r['cpu_us_per_sample']:6.1f} us/sample  "
            f"RSS {r['rss_mb']:6.1f} MB  sent {r['sent']} acked {r['acked']} counted {r['counted']} lost {r['lost']}  "
            f"gen late max {r['generator_late_max_s']}s"
            + (f"\n    stream errors: {r['stream_error_kinds']}" if r["stream_error_kinds"] else "")
            + (f"\n    stream opens retried: {r['retried_opens']}" if r["retried_opens"] else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=["driver", "bare", "agents"], default="driver", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--address", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--run", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--window", type=float, default=6.0, help="seconds measured per scenario (6)")
    p.add_argument("--procs", type=int, default=1, help="load generator processes (1; see README)")
    p.add_argument("--goal-nodes", type=int, default=5000, help="nodes at 10 s for the goal check (5000)")
    p.add_argument("--ramp", default="1000,2000,3000,4000", help="node counts at 1 s, tried in order")
    p.add_argument("--json", type=Path, help="also write all results here")
    args = p.parse_args(argv)

    if args.role == "bare":
        asyncio.run(_bare_server(args.port, args.ready))
        return 0
    if args.role == "agents":
        asyncio.run(_agents(args.address, args.first, args.count, args.interval, args.run, args.out))
        return 0

    if args.quick:
        args.window, args.goal_nodes, args.ramp = 5.0, 500, "500"
    print(f"machine: {os.cpu_count()} CPUs; sample {len(_sample_bytes())} bytes (8 GPUs); window {args.window:g}s; "
          f"{args.procs} generator processes", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("bare", "aggregator"):
            results.append(run_scenario(kind, args.goal_nodes, 10.0, args.window, args.procs, Path(tmp)))
            print(_line(results[-1]), flush=True)
        for nodes in [int(n) for n in args.ramp.split(",")]:
            pair = []
            for kind in ("bare", "aggregator"):
                pair.append(run_scenario(kind, nodes, 1.0, args.window, args.procs, Path(tmp)))
                print(_line(pair[-1]), flush=True)
            results.extend(pair)
            agg = pair[1]
            if agg["lost"] or agg["cpu_core_share"] > 0.95:
                break
    served = [r["nodes"] for r in results if r["server"] == "aggregator" and r["interval_s"] == 1.0 and not r["lost"]]
    print(f"\nmost nodes at 1 s with no sample lost: {max(served) if served else 0}")
    for bare, agg in zip(results[0::2], results[1::2]):
        print(f"{agg['nodes']:>6} nodes @ {agg['interval_s']:g}s: aggregator/bare CPU per sample = "
              f"{agg['cpu_us_per_sample'] / bare['cpu_us_per_sample']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
