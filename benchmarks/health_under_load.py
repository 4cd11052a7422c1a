"""Health endpoints under hostile load: /healthz and gRPC health latency, and the event-loop stall of a big body.

Starts `aios-aggregator serve --no-kubernetes` from a checkout (this one, or
each `--code DIR`, e.g. `git archive main | tar -x -C /tmp/before`) on a
temporary SQLite file, fills its registry with `--nodes` 8-GPU nodes (one
hello + one sample each, over gRPC), then runs two scenarios:

1. **load**: `--idle` idle TCP connections (half of them send a partial
   request head and stop: half-open), plus `--callers` concurrent clients
   calling `GET /check_stability` in a loop (no token: it is a read); all the
   while a prober opens a fresh connection for `GET /healthz` (as the kubelet
   does) and calls gRPC `grpc.health.v1.Health/Check`, every `--every` s, for
   `--window` s. A probe that takes longer than 5 s counts as a timeout.
2. **big body**: one `PATCH /clusters/update/<id>` of `--body-mb` MB of JSON
   (with the token; ending in a trailing comma like the operators' guide's
   example, so the lenient parse runs) while the prober runs every 10 ms;
   the figure is the longest probe and how long the upload took to be answered.

    python benchmarks/health_under_load.py                       # this checkout
    python benchmarks/health_under_load.py --code /tmp/before    # and another, side by side

The server under test and the load run in separate processes (the load is
asyncio in this one); medians, p99 and max per scenario; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
PROBE_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the server


class Server:
    def __init__(self, code: Path, work: Path) -> None:
        self.code = code
        self.work = work
        self.grpc_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.http_port = 0
        self.health_port: int | None = None  # the dedicated health port, where the checkout has one

    def start(self) -> None:
        ready = self.work / "ready.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "POLICY_"))}
        env.update(PYTHONPATH=str(self.code), AIOS_TOKEN=TOKEN, AIOS_POLICY_CACHE_DIR=str(self.work / "cache"))
        self.log = open(self.work / "server.log", "w")  # noqa: SIM115 - closed in stop()
        has_health_port = "--health-port" in (self.code / "aggregator" / "commands" / "serve.py").read_text()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator.cli", "serve", "--no-kubernetes", "--host", "127.0.0.1",
             "--grpc-port", str(self.grpc_port), "--http-port", "0", "--db", str(self.work / "a.db"),
             "--cluster-id", "bench", "--ready-file", str(ready), *(["--health-port", "0"] if has_health_port else [])],
            cwd=self.code, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the aggregator did not start: {(self.work / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        ports = json.loads(ready.read_text())
        self.http_port = ports["http_port"]
        self.health_port = ports.get("health_port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------- filling the registry


async def populate(grpc_port: int, nodes: int) -> None:
    import grpc

    from proto.telemetry.v1 import telemetry_pb2 as pb
    from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

    def inventory(node_id: str) -> pb.NodeInventory:
        return pb.NodeInventory(
            node_id=node_id, node_name=node_id,
            host=pb.HostInventory(hostname=node_id, cpu_logical=128, memory_total_mb=1_031_891),
            gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{node_id}-{i}", name="NVIDIA H100 80GB HBM3", memory_mb=81559)
                  for i in range(8)],
        )

    def sample() -> pb.NodeSample:
        return pb.NodeSample(
            timestamp=time.time(), host=pb.HostSample(cpu_percent=30.0, memory_total_mb=1_031_891, memory_used_mb=10),
            gpus=[pb.GpuSample(index=i, uuid=f"GPU-{i}", utilization_gpu_pct=50.0, temperature_c=60.0,
                               power_draw_w=300.0) for i in range(8)],
        )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.TelemetryIngestStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)

        async def one(n: int) -> None:
            node_id = f"node-{n:05d}"
            call = stub.Stream(metadata=metadata)
            await call.write(pb.AgentMessage(seq=0, hello=pb.Hello(
                node_id=node_id, cluster_id="bench", agent_version="bench", agent_instance=f"i-{n}",
                inventory=inventory(node_id), interval_s=10.0)))
            await call.write(pb.AgentMessage(seq=1, sample=sample()))
            await call.done_writing()
            async for _ in call:
                pass

        for start in range(0, nodes, 200):
            await asyncio.gather(*(one(n) for n in range(start, min(nodes, start + 200))))


# ---------------------------------------------------------------- HTTP with raw sockets (cheap, no pool)


async def http_get(port: int, path: str, *, headers: str = "") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # until the server closes
        return int(status_line.split()[1]) if status_line else 0
    finally:
        writer.close()


async def http_send(port: int, method: str, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1]) if status_line else 0
    finally:
        writer.close()


class Prober:
    """Measures /healthz (fresh connection each time) and gRPC health, every `every` seconds."""

    def __init__(self, http_port: int, grpc_port: int, every: float, health_port: int | None = None) -> None:
        self.http_port, self.grpc_port, self.every, self.health_port = http_port, grpc_port, every, health_port
        self.http_ms: list[float] = []
        self.grpc_ms: list[float] = []
        self.health_ms: list[float] = []
        self.http_failures = self.grpc_failures = self.health_failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Two independent loops, so a slow answer on one does not thin out the other's samples."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), timeout=30)

            async def every(probe) -> None:
                while not stop.is_set():
                    await probe()
                    try:
                        await asyncio.wait_for(stop.wait(), self.every)
                    except asyncio.TimeoutError:
                        pass

            loops = [every(self._http), every(lambda: self._grpc(health, health_pb2))]
            if self.health_port:
                loops.append(every(self._health_port))
            await asyncio.gather(*loops)

    async def _http(self) -> None:
        ms, ok = await self._get_healthz(self.http_port)
        self.http_ms.append(ms)
        self.http_failures += not ok

    async def _health_port(self) -> None:
        ms, ok = await self._get_healthz(self.health_port)
        self.health_ms.append(ms)
        self.health_failures += not ok

    @staticmethod
    async def _get_healthz(port) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(http_get(port, "/healthz"), PROBE_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError):
            status = 0
        return min((time.perf_counter() - started) * 1000, PROBE_TIMEOUT_S * 1000), status == 200

    async def _grpc(self, health, health_pb2) -> None:
        started = time.perf_counter()
        try:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S)
            ok = True
        except Exception:  # noqa: BLE001 - a timeout or refusal is a failed probe
            ok = False
        self.grpc_ms.append(min((time.perf_counter() - started) * 1000, PROBE_TIMEOUT_S * 1000))
        if not ok:
            self.grpc_failures += 1


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.1f} / {p99:.1f} / {ordered[-1]:.1f}"


# ---------------------------------------------------------------- scenarios


async def idle_connections(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    held = []
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        if i % 2:  # half-open: a request head that never ends
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
            await writer.drain()
        held.append((reader, writer))
    return held


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(), 0.05)
    except (asyncio.TimeoutError, OSError):
        return False
    return data == b"" or reader.at_eof()


async def run_load(http_port: int, callers: int, idle: int, seconds: float) -> dict:
    """The load (its own process, so its event loop does not delay the prober's): idle and half-open
    connections held, and `callers` clients calling /check_stability back to back."""
    held = await idle_connections(http_port, idle)
    stop = asyncio.Event()
    statuses: dict[int, int] = {}

    async def caller() -> None:
        while not stop.is_set():
            try:
                status = await asyncio.wait_for(http_get(http_port, "/check_stability"), 60)
            except (asyncio.TimeoutError, OSError):
                status = 0
            statuses[status] = statuses.get(status, 0) + 1

    tasks = [asyncio.ensure_future(caller()) for _ in range(callers)]
    await asyncio.sleep(seconds)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closed = [await closed_by_server(reader) for reader, _ in held]
    for _, writer in held:
        writer.close()
    return {"check_stability_answers": {str(k): v for k, v in sorted(statuses.items())}, "idle_held": len(held),
            "idle_closed_by_server": sum(closed)}


async def load_scenario(server: Server, args) -> dict:
    load = subprocess.Popen(
        [sys.executable, __file__, "--role", "load", "--port", str(server.http_port), "--callers", str(args.callers),
         "--idle", str(args.idle), "--window", str(args.window + 2.0)],
        stdout=subprocess.PIPE, text=True,
    )
    await asyncio.sleep(2.0)  # let the load build up
    stop = asyncio.Event()
    prober = Prober(server.http_port, server.grpc_port, args.every, server.health_port)
    probe = asyncio.ensure_future(prober.run(stop))
    await asyncio.sleep(args.window)
    stop.set()
    await probe
    out, _ = await asyncio.to_thread(load.communicate, timeout=120)
    verdicts = await asyncio.to_thread(_count_verdicts, server.http_port)
    return {"verdict_rows": verdicts,
            "healthz": _summary(prober.http_ms), "healthz_failures": f"{prober.http_failures}/{len(prober.http_ms)}",
            "health_port": _summary(prober.health_ms),
            "health_port_failures": f"{prober.health_failures}/{len(prober.health_ms)}",
            "grpc": _summary(prober.grpc_ms), "grpc_failures": f"{prober.grpc_failures}/{len(prober.grpc_ms)}",
            **json.loads(out)}


def _count_verdicts(port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stability/verdicts?limit=10000", timeout=60) as answer:
        return len(json.loads(answer.read())["verdicts"])


def big_body(megabytes: float) -> bytes:
    entry = {"nodeName": "node-00000", "gpus": [{"model": "NVIDIA H100 80GB HBM3", "memoryMb": 81559, "index": 1}] * 8,
             "labels": {"zone": "a", "rack": "r1"}, "tags": ["x", "y", "z"]}
    one = len(json.dumps(entry)) + 2
    count = int(megabytes * 1e6 / one)
    # with the trailing comma of the operators' guide's example: the lenient path is the one measured
    return json.dumps({"clusterMetadata.bench": [entry] * count}).encode()[:-1] + b",}"


async def body_scenario(server: Server, args) -> dict:
    body = big_body(args.body_mb)
    stop = asyncio.Event()
    prober = Prober(server.http_port, server.grpc_port, 0.01, server.health_port)
    probe = asyncio.ensure_future(prober.run(stop))
    await asyncio.sleep(1.0)
    baseline = len(prober.http_ms)
    started = time.perf_counter()
    status = await http_send(server.http_port, "PATCH", "/clusters/update/bench", body)
    answered_s = time.perf_counter() - started
    await asyncio.sleep(0.5)
    stop.set()
    await probe
    during_http = prober.http_ms[baseline:]
    during_grpc = prober.grpc_ms[baseline:]
    during_health = prober.health_ms[baseline:]
    return {"body_mb": round(len(body) / 1e6, 1), "status": status, "answered_s": round(answered_s, 2),
            "healthz_max_ms": round(max(during_http, default=0), 1), "grpc_max_ms": round(max(during_grpc, default=0), 1),
            "health_port_max_ms": round(max(during_health, default=0), 1) if during_health else None,
            "healthz": _summary(during_http), "grpc": _summary(during_grpc)}


async def run_one(code: Path, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        server = Server(code, Path(tmp))
        server.start()
        try:
            await populate(server.grpc_port, args.nodes)
            result = {"code": str(code)}
            result["load"] = await load_scenario(server, args)
            result["big_body"] = await body_scenario(server, args)
            return result
        finally:
            server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, action="append", default=[], help="another checkout to measure too")
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--body-mb", type=float, default=15.7)
    parser.add_argument("--skip-self", action="store_true", help="measure only the --code checkouts")
    parser.add_argument("--role", default="bench", choices=("bench", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "load":
        print(json.dumps(asyncio.run(run_load(args.port, args.callers, args.idle, args.window))))
        return 0
    codes = [*args.code] if args.skip_self else [*args.code, ROOT]
    results = [asyncio.run(run_one(code, args)) for code in codes]
    for result in results:
        print(json.dumps(result, indent=1))
    print("\n| checkout | /healthz (API port) ms p50 / p99 / max (failed) | /healthz (health port) | gRPC health |"
          " idle closed | /check_stability answers / verdict rows | big body: /healthz max ms | health port max |"
          " gRPC max ms | answered s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        load, body = r["load"], r["big_body"]
        print(f"| {r['code']} | {load['healthz']} ({load['healthz_failures']}) "
              f"| {load['health_port']} ({load['health_port_failures']}) | {load['grpc']} ({load['grpc_failures']}) "
              f"| {load['idle_closed_by_server']}/{load['idle_held']} "
              f"| {sum(load['check_stability_answers'].values())} / {load['verdict_rows']} | {body['healthz_max_ms']} "
              f"| {body['health_port_max_ms']} | {body['grpc_max_ms']} | {body['answered_s']} ({body['status']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
