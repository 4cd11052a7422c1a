"""StabilityService on a real grpc.aio server on loopback."""

import asyncio
import json
import queue
import threading
import time

import grpc
import pytest

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import StabilityChecker, policy_opener
from aggregator.stability.grpc_service import add_stability_service
from aggregator.stability.verdicts import VerdictStore
from proto.stability.v1 import stability_pb2 as pb
from proto.stability.v1 import stability_pb2_grpc as pb_grpc
from proto.telemetry.v1.readings import HealthEvent
from tests.support.stability import InProcessRegistry, node_state

pytestmark = pytest.mark.integration


class AioServerThread:
    """A grpc.aio server on its own loop in a thread. The loop runs `run_forever` and the
    server is started and stopped by submitted coroutines: a loop running
    `wait_for_termination()` here sometimes ended before a submitted stop could run."""

    def __init__(self, checker):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(checker), self._loop).result(10)

    async def _start(self, checker):
        self._server = grpc.aio.server()
        add_stability_service(self._server, checker)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return port

    def close(self):
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def service(tmp_path):
    db = Database(tmp_path / "aggregator.sqlite")
    registry = InProcessRegistry([node_state("node-a")])
    checker = StabilityChecker(
        cluster_id="c1", registry=registry, cluster_store=ClusterStore(db), verdicts=VerdictStore(db),
        open_policy=policy_opener(PolicyConfig(cache_dir=tmp_path / "cache", call_timeout_s=10)),
    )
    server = AioServerThread(checker)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield pb_grpc.StabilityServiceStub(channel), checker, registry
    channel.close()
    server.close()
    checker.close()
    db.close()


def test_latest_history_and_a_stream_of_changes(service):
    stub, checker, registry = service
    empty = stub.GetLatestVerdict(pb.GetLatestVerdictRequest(), timeout=10)
    assert not empty.HasField("verdict")

    now = stub.GetLatestVerdict(pb.GetLatestVerdictRequest(check_now=True), timeout=10).verdict
    assert (now.outcome, now.is_stable, now.trigger, now.nodes) == ("stable", True, "grpc", 1)

    received: queue.Queue = queue.Queue()
    stream = stub.WatchVerdicts(pb.WatchVerdictsRequest(), timeout=30)

    ended = []  # how the stream ended, checked here: an assert in the thread would only warn

    def read():
        try:
            for verdict in stream:
                received.put(verdict)
        except grpc.RpcError as e:
            ended.append(e.code())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert received.get(timeout=10).id == now.id  # the starting point

    # the service subscribed before sending the starting point: nothing is missed from here
    checker.check()  # still stable: not a change, not sent
    event = HealthEvent(kind="xid", timestamp=time.time(), gpu_index=0, xid=48)
    registry.put(node_state("node-a", events=(event,)), kind="health", health=event)
    unstable = checker.check()
    change = received.get(timeout=10)
    assert (change.id, change.outcome, change.HasField("is_stable"), change.is_stable) == (unstable.id, "unstable", True, False)
    assert json.loads(change.stability_check_data_json)["reasons"][0]["xid"] == 48
    assert received.empty()
    stream.cancel()
    reader.join(10)
    assert ended == [grpc.StatusCode.CANCELLED]

    history = stub.ListVerdicts(pb.ListVerdictsRequest(limit=2), timeout=10).verdicts
    assert [v.outcome for v in history] == ["unstable", "stable"]
    older = stub.ListVerdicts(pb.ListVerdictsRequest(limit=10, before_id=history[1].id), timeout=10).verdicts
    assert [v.id for v in older] == [now.id]
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListVerdicts(pb.ListVerdictsRequest(limit=20000), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
