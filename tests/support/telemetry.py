"""Shared pieces of the telemetry tests: a real aggregator process, agents, readings.

Everything here starts real processes on loopback; each helper can stop what
it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from proto.telemetry.v1.readings import (
    MIB,
    GpuInventory,
    GpuSample,
    HealthEvent,
    HostInventory,
    HostSample,
    NodeInventory,
    NodeSample,
)
from tests.support.net import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]  # the repository
TOKEN = "test-token-6f1d"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["AIOS_TOKEN"] = TOKEN
    env.update(extra)
    return env


class AggregatorProcess:
    """`aios-aggregator serve` in a subprocess, on a fixed port so agents find it again after a restart."""

    def __init__(self, tmp: Path, *, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.tmp = tmp
        self.db = tmp / "aggregator.db"
        self.port = port or free_port()
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.http_port: int | None = None  # from the ready file (the HTTP API binds a free port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> AggregatorProcess:
        """`env`: the whole environment (default `base_env()`)."""
        ready = self.tmp / f"ready-{self.starts}.json"
        self.starts += 1
        self.log = open(self.tmp / f"aggregator-{self.starts}.log", "w")  # noqa: SIM115 - the child's stdout; closed in stop()
        http = () if "--http-port" in self.extra_args else ("--http-port", "0")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "aggregator.cli", "serve",
                "--host", "127.0.0.1", "--grpc-port", str(self.port), "--db", str(self.db),
                "--cluster-id", "test-cluster", "--ready-file", str(ready), *http, *self.extra_args,
            ],
            cwd=ROOT, env=base_env() if env is None else env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, what="aggregator ready file")
        if self.proc.poll() is not None:
            raise AssertionError(f"aggregator exited: {self.log_text()}")
        self.http_port = json.loads(ready.read_text()).get("http_port")
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_text(self) -> str:
        return "".join((self.tmp / f"aggregator-{i}.log").read_text() for i in range(1, self.starts + 1))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


class AggregatorThread:
    """The aggregator (`aggregator.service.Aggregator`) in this process on its own loop,
    so a test can look at its registry and database directly; agents connect to `.address`."""

    def __init__(self, tmp: Path, *, cluster_id: str = "test-cluster", env: dict | None = None, http: bool = False):
        import asyncio
        import threading

        from aggregator.service import Aggregator, ServeConfig

        self.loop = asyncio.new_event_loop()
        self.aggregator = Aggregator(ServeConfig(
            db_path=tmp / "aggregator.sqlite", tokens=(TOKEN,), grpc_port=0, http_port=0 if http else None,
            host="127.0.0.1", cluster_id=cluster_id, status_every_s=0.1, commit_interval_s=0.05,
            kubernetes=False, **({} if env is None else {"env": env}),
        ))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self.aggregator.start())
        self.address = f"127.0.0.1:{self.aggregator.grpc.port}"
        # with http=True: serve's own HTTP app (stability routes, /metrics) on an ephemeral port
        self.http_url = f"http://127.0.0.1:{self.aggregator.http.port}" if self.aggregator.http else ""

    def _run(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self._run(self.aggregator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AgentProcess:
    """`aios-agent run` in a subprocess (host collector on this machine; NVML per `env`)."""

    def __init__(self, tmp: Path, node_id: str, address: str | None, *, interval_s: float | None = 0.2,
                 env: dict | None = None,
                 token: str = TOKEN, extra_args: tuple[str, ...] = (), launcher: tuple[str, ...] = ("-m", "agent.cli")):
        """`launcher`: what follows the interpreter, before `run` (a wrapper module that
        calls `agent.cli.main` can stand in). The metrics port is any free one
        unless `env` sets AIOS_METRICS_PORT (agents started together must not collide)."""
        self.node_id = node_id
        self.stats_file = tmp / f"agent-{node_id}.stats.json"
        self.log_path = tmp / f"agent-{node_id}.log"
        extra = {"NODE_ID": node_id, "NODE_NAME": f"{node_id}-name", "AIOS_TOKEN": token, "AIOS_METRICS_PORT": "0"}
        if env is None:
            extra["AIOS_NVML_LIBRARY"] = str(tmp / "no-such-libnvidia-ml.so.1")  # host-only
        full_env = base_env(**extra)
        full_env.update(env or {})
        self.log = open(self.log_path, "w")  # noqa: SIM115 - the child's stdout; closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, *launcher, "run", "--log-level", "INFO", "--stats-file", str(self.stats_file),
                *(("--aggregator", address) if address is not None else ()),  # None: AIOS_AGGREGATOR_ADDR
                *(("--interval", str(interval_s)) if interval_s is not None else ()),  # None: AIOS_INTERVAL_S
                *extra_args,
            ],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}


def query_stub(address: str, token: str = TOKEN):
    channel = grpc.insecure_channel(address)
    return channel, pb_grpc.TelemetryQueryStub(channel), (("authorization", f"Bearer {token}"),)


def get_node(address: str, node_id: str, max_events: int = 0) -> pb.NodeDetail | None:
    channel, stub, md = query_stub(address)
    try:
        return stub.GetNode(pb.GetNodeRequest(node_id=node_id, max_health_events=max_events), metadata=md, timeout=5)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    finally:
        channel.close()


def list_nodes(address: str) -> dict[str, pb.NodeSummary]:
    channel, stub, md = query_stub(address)
    try:
        return {n.node_id: n for n in stub.ListNodes(pb.ListNodesRequest(), metadata=md, timeout=5).nodes}
    finally:
        channel.close()


# ---------------------------------------------------------------- literal readings


def inventory(node_id: str, gpus: int = 2) -> NodeInventory:
    return NodeInventory(
        node_id=node_id,
        node_name=f"{node_id}-name",
        host=HostInventory("h-" + node_id, "6.1.0", "Debian 12", 32, 16, 257_000 * MIB, 0),
        gpus=tuple(
            GpuInventory(index=i, uuid=f"GPU-{node_id}-{i}", name="NVIDIA A100-SXM4-80GB", memory_bytes=81920 * MIB,
                         compute_capability=(8, 0))
            for i in range(gpus)
        ),
        driver_version="550.54.15",
        cuda_driver_version="12.4",
    )


def sample(n: int, gpus: int = 2, events: tuple[HealthEvent, ...] = ()) -> NodeSample:
    return NodeSample(
        timestamp=1_764_400_000.0 + n,
        host=HostSample(cpu_percent=float(n % 100), memory_total_bytes=257_000 * MIB, memory_used_bytes=(1000 + n) * MIB),
        gpus=tuple(
            GpuSample(index=i, uuid=f"GPU-{i}", utilization_gpu_pct=float((n + i) % 100), temperature_c=40.0,
                      memory_used_bytes=n * MIB)
            for i in range(gpus)
        ),
        health_events=events,
    )


class ScriptedReader:
    """A NodeReader stand-in producing literal readings (for in-process daemons)."""

    def __init__(self, node_id: str, gpus: int = 2):
        self.node_id = node_id
        self.gpus = gpus
        self.n = 0

    def inventory(self) -> NodeInventory:
        return inventory(self.node_id, self.gpus)

    def sample(self) -> NodeSample:
        self.n += 1
        return sample(self.n, self.gpus)


class RawStream:
    """A hand-driven ingest stream, to send exactly the bytes a test wants."""

    def __init__(self, address: str, token: str = TOKEN):
        self.channel = grpc.insecure_channel(address)
        # identity serializer: tests send raw (possibly malformed) bytes
        self.method = self.channel.stream_stream(
            "/aios.telemetry.v1.TelemetryIngest/Stream",
            request_serializer=lambda b: b,
            response_deserializer=pb.AggregatorMessage.FromString,
        )
        self.token = token

    def exchange(self, messages: list[bytes], timeout_s: float = 10.0):
        """Send all, half-close, collect replies and the final status."""
        replies = []
        try:
            metadata = (("authorization", f"Bearer {self.token}"),)
            for reply in self.method(iter(messages), metadata=metadata, timeout=timeout_s):
                replies.append(reply)
        except grpc.RpcError as e:
            return replies, e.code(), e.details()
        return replies, grpc.StatusCode.OK, ""

    def close(self):
        self.channel.close()
