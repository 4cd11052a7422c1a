"""NodeStore on a real SQLite file: what is written comes back, events are not duplicated."""

from aggregator.db import Database
from aggregator.telemetry.model import PendingWrite, SampleFigures, StoredEvent
from aggregator.telemetry.registry import NodeRegistry
from aggregator.telemetry.store import NodeStore
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import inventory, sample


def decode(wire):
    return convert.sample_from_pb(pb.NodeSample.FromString(wire))


def test_write_then_load_rebuilds_the_registry(tmp_path):
    clock = lambda: 2_000_000_000.0  # noqa: E731
    reg = NodeRegistry(clock=clock, decode_sample=decode)
    reg.hello("n1", cluster_id="c", agent_version="1", agent_instance="i1", inventory=inventory("n1"), interval_s=10)
    wire = convert.sample_to_pb(sample(7)).SerializeToString()
    reg.record_sample("n1", 1, SampleFigures(7.0, cpu_percent=7.0, gpu_problems=("gpu 1 lost",)), wire, 3)
    event = HealthEvent("row_remap_failure", 1_999_999_999.0, gpu_index=1, message="remap failed")
    reg.record_health("n1", 2, event)

    db = Database(tmp_path / "a.db")
    store = NodeStore(db)
    pending = reg.take_pending()
    store.write(pending)
    store.write(pending)  # re-writing the same batch duplicates nothing
    reg.record_sample("n1", 3, SampleFigures(8.0, cpu_percent=8.0), wire, 0)
    store.write(reg.take_pending())  # a light update (inventory unchanged)
    db.close()

    db = Database(tmp_path / "a.db")
    records, events = NodeStore(db).load()
    assert [e.event for e in events] == [event]
    assert NodeStore(db).health_events("n1") == [event]
    (rec,) = records
    assert rec.inventory == inventory("n1") and rec.seq == 3 and rec.samples_received == 2
    assert rec.dropped_samples == 3 and rec.figures.cpu_percent == 8.0
    again = NodeRegistry(clock=clock, decode_sample=decode)
    again.restore(records, events)
    state = again.get("n1")
    assert state.latest == sample(7)  # what was sent, not a second trip through the same decoder
    assert state.status == "unhealthy"  # the remap failure is within the window
    assert state.rolling == reg.get("n1").rolling
    db.close()


def test_pruning_keeps_each_nodes_most_recent_events(tmp_path):
    db = Database(tmp_path / "a.db")
    store = NodeStore(db)
    events = [StoredEvent(node, "i", seq, HealthEvent("xid", float(seq), xid=13))
              for node in ("a", "b") for seq in range(1, 6)]
    store.write(PendingWrite(nodes=(), events=tuple(events)))
    assert store.prune_events(keep_per_node=2) == 6
    assert [e.timestamp for e in store.health_events("a")] == [4.0, 5.0]
    assert [e.timestamp for e in store.health_events("b")] == [4.0, 5.0]
    db.close()
