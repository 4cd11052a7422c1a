"""Helpers for the stability tests: node states, an in-process registry, a webhook stand-in."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aggregator.telemetry.model import NodeChange, NodeState
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


def node_state(node_id: str, *, gpus: int = 2, now: float | None = None, status: str = "healthy",
               events: tuple[HealthEvent, ...] = (), throttle: dict[int, tuple[str, ...]] | None = None) -> NodeState:
    now = time.time() if now is None else now
    throttle = throttle or {}
    inventory = NodeInventory(
        node_id=node_id, node_name=node_id,
        host=HostInventory(hostname=node_id, kernel="6.1", os="Debian 12", cpu_logical=16, cpu_physical=8,
                           memory_total_bytes=64_000 * MIB, swap_total_bytes=0),
        gpus=tuple(GpuInventory(index=i, uuid=f"GPU-{node_id}-{i}", name="NVIDIA A100-SXM4-80GB", memory_bytes=81_920 * MIB)
                   for i in range(gpus)),
    )
    sample = NodeSample(
        timestamp=now,
        host=HostSample(cpu_percent=12.5, memory_total_bytes=64_000 * MIB, memory_available_bytes=48_000 * MIB,
                        fs_total_bytes=500_000 * MIB, fs_used_bytes=100_000 * MIB),
        gpus=tuple(GpuSample(index=i, uuid=f"GPU-{node_id}-{i}", utilization_gpu_pct=40.0, memory_total_bytes=81_920 * MIB,
                             memory_used_bytes=20_480 * MIB, temperature_c=55.0, throttle_reasons=throttle.get(i, ()),
                             ecc_uncorrected_volatile=0)
                   for i in range(gpus)),
    )
    return NodeState(node_id=node_id, status=status, inventory=inventory, latest=sample, last_seen=now,
                     first_seen=now - 100, health_events=events)


class InProcessRegistry:
    """Stands in for the telemetry branch's NodeRegistry: snapshot() and subscribe()."""

    def __init__(self, states=()):
        self._states = {s.node_id: s for s in states}
        self._listeners = []
        self._lock = threading.Lock()

    def snapshot(self) -> list[NodeState]:
        with self._lock:
            return list(self._states.values())

    def get(self, node_id):
        with self._lock:
            return self._states.get(node_id)

    def subscribe(self, callback):
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def put(self, state: NodeState, kind: str = "status", health: HealthEvent | None = None) -> None:
        with self._lock:
            self._states[state.node_id] = state
        for callback in list(self._listeners):
            callback(NodeChange(kind=kind, node=state, timestamp=time.time(), health=health))


class WebhookStandIn:
    """A local HTTP server recording every POST; the first `fail_first` answer 503."""

    def __init__(self, fail_first: int = 0):
        self.calls: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._changed = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stand_in._changed:
                    stand_in.attempts += 1
                    failing = stand_in.attempts <= stand_in.fail_first
                    if not failing:
                        stand_in.calls.append({"content_type": self.headers.get("Content-Type"), "body": json.loads(body)})
                    stand_in._changed.notify_all()
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for_calls(self, count: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhook got {len(self.calls)} calls, expected {count}: {self.calls}")
                self._changed.wait(left)
            return list(self.calls)

    def close(self):
        self._server.shutdown()
        self._server.server_close()
