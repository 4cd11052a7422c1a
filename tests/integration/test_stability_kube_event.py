"""Kubernetes Events on each stability transition, through the official client against kmock."""

import asyncio
import threading
import time

import pytest

kubernetes = pytest.importorskip("kubernetes")
kmock = pytest.importorskip("kmock")

from aggregator.stability.checker import Transition  # noqa: E402
from aggregator.stability.notify import KubernetesEventSink, NotificationDispatcher  # noqa: E402
from aggregator.stability.verdicts import Verdict  # noqa: E402

pytestmark = pytest.mark.integration


class KmockThread:
    """kmock's Kubernetes emulator on loopback, in its own thread and loop (design.md)."""

    def __init__(self):
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self):
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def close(self):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def core_v1():
    server = KmockThread()
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    api = kubernetes.client.ApiClient(configuration)
    yield kubernetes.client.CoreV1Api(api)
    api.close()
    server.close()


def verdict(vid, outcome, reasons=()):
    return Verdict(cluster_id="c1", checked_at=time.time(), duration_s=0.01, policy_uri="aios-default-stability",
                   outcome=outcome, stability_check_data={"reasons": list(reasons)}, id=vid)


def test_one_event_per_transition_naming_node_and_gpu(core_v1):
    sink = KubernetesEventSink(
        core_v1, namespace="controllers",
        involved_object={"apiVersion": "apps/v1", "kind": "Deployment", "name": "c1-controller"},
        clock=lambda: 1_700_000_000.0,
    )
    dispatcher = NotificationDispatcher([sink], backoff_s=0.05)
    dispatcher.start()
    stable, unstable = verdict(1, "stable"), verdict(2, "unstable", [{"node_id": "node-b", "gpu": 3, "reason": "xid"}])
    dispatcher.submit(Transition(unstable, stable))
    dispatcher.submit(Transition(verdict(3, "stable"), unstable))
    dispatcher.close()
    assert (dispatcher.delivered, dispatcher.failed) == (2, 0)

    events = sorted(core_v1.list_namespaced_event("controllers").items, key=lambda e: e.metadata.name)
    assert [(e.metadata.name, e.reason, e.type) for e in events] == [
        ("c1-stability-2", "ClusterUnstable", "Warning"),
        ("c1-stability-3", "ClusterStable", "Normal"),
    ]
    assert events[0].message == "cluster c1 is unstable (policy aios-default-stability): node-b GPU 3: xid"
    assert (events[0].involved_object.kind, events[0].involved_object.name) == ("Deployment", "c1-controller")

    sink.send(Transition(unstable, stable))  # a retry of a delivered event: no second Event
    assert len(core_v1.list_namespaced_event("controllers").items) == 2
