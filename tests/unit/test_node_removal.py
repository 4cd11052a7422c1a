"""Removing a node: registry and SQLite store together, and nothing written back afterwards."""

import asyncio
import sqlite3
import time

import pytest

from aggregator.db import Database
from aggregator.telemetry.ingest import IngestService
from aggregator.telemetry.model import SampleFigures
from aggregator.telemetry.registry import NodeRegistry, UnknownNode
from aggregator.telemetry.store import NodeStore
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import inventory, sample


def decode(wire):
    return convert.sample_from_pb(pb.NodeSample.FromString(wire))


WIRE = convert.sample_to_pb(sample(1)).SerializeToString()


def joined(reg: NodeRegistry, node_id: str) -> None:
    reg.hello(node_id, cluster_id="c", agent_version="1", agent_instance="i1", inventory=inventory(node_id),
              interval_s=10)
    reg.record_sample(node_id, 1, SampleFigures(1.0, cpu_percent=1.0), WIRE)
    reg.record_health(node_id, 2, HealthEvent("xid", 1.0, gpu_index=0, xid=79))


def rows(db_path, table: str) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return sorted(r[0] for r in conn.execute(f"SELECT node_id FROM {table}"))


@pytest.fixture
def parts(tmp_path):
    db = Database(tmp_path / "a.db")
    store = NodeStore(db)
    reg = NodeRegistry(clock=lambda: 2_000_000_000.0, decode_sample=decode)
    yield reg, store, tmp_path / "a.db"
    db.close()


def test_remove_forgets_the_node_in_memory_and_on_disk_and_tells_listeners(parts):
    reg, store, path = parts
    joined(reg, "n1")
    joined(reg, "n2")
    store.write(reg.take_pending())
    changes = []
    reg.subscribe(changes.append)

    state = reg.remove("n1", delete_stored=store.delete_node)

    assert state.node_id == "n1" and reg.get("n1") is None and [s.node_id for s in reg.snapshot()] == ["n2"]
    assert [(c.kind, c.node.node_id) for c in changes] == [("removed", "n1")]
    for table in ("telemetry_node_state", "telemetry_node_inventory", "telemetry_health_events"):
        assert rows(path, table) == ["n2"], table
    assert reg.remove("n1", delete_stored=store.delete_node) is None  # unknown now: nothing happens
    records, _ = store.load()
    assert [r.node_id for r in records] == ["n2"]


def test_a_store_failure_keeps_the_node(parts):
    reg, store, path = parts
    joined(reg, "n1")
    store.write(reg.take_pending())

    def failing(node_id):
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        reg.remove("n1", delete_stored=failing)
    assert reg.get("n1") is not None and rows(path, "telemetry_node_state") == ["n1"]


def test_pending_and_requeued_writes_of_a_removed_node_are_dropped(parts):
    reg, store, path = parts
    joined(reg, "n1")
    joined(reg, "n2")
    in_flight = reg.take_pending()  # taken by a committer whose write then fails
    reg.record_sample("n1", 3, SampleFigures(2.0), WIRE)  # pending again
    reg.remove("n1", delete_stored=store.delete_node)
    reg.requeue(in_flight)
    store.write(reg.take_pending())
    assert rows(path, "telemetry_node_state") == ["n2"]
    assert rows(path, "telemetry_health_events") == ["n2"]


def test_messages_for_a_removed_node_raise_unknown_node(parts):
    reg, store, _ = parts
    joined(reg, "n1")
    reg.remove("n1", delete_stored=store.delete_node)
    with pytest.raises(UnknownNode, match="n1"):
        reg.record_sample("n1", 3, SampleFigures(2.0), WIRE)
    with pytest.raises(UnknownNode):
        reg.record_health("n1", 4, HealthEvent("xid", 2.0, gpu_index=0, xid=13))


def test_ingest_remove_waits_for_a_commit_in_progress(parts):
    """A batch taken before the removal is written before it, never after (the node stays gone)."""
    reg, store, path = parts
    joined(reg, "n1")

    class SlowStore:
        """The real store, whose writes take a while (a busy disk) and say when they begin."""

        def __init__(self, loop, started):
            self.loop, self.started = loop, started

        def write(self, pending):
            self.loop.call_soon_threadsafe(self.started.set)
            time.sleep(0.2)
            store.write(pending)

        def delete_node(self, node_id):
            return store.delete_node(node_id)

    async def scenario():
        started = asyncio.Event()
        ingest = IngestService(reg, SlowStore(asyncio.get_running_loop(), started))
        commit = asyncio.ensure_future(ingest.commit_once())
        await started.wait()  # the batch holding n1 is being written
        removed = await ingest.remove_node("n1")
        await commit
        return removed, await ingest.remove_node("n1")

    assert asyncio.run(scenario()) == (True, False)
    assert rows(path, "telemetry_node_state") == [] and rows(path, "telemetry_node_inventory") == []
