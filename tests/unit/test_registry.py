"""NodeRegistry: status rule, rolling figures, duplicates, persistence hand-off (fake clock)."""

import math

import pytest

from aggregator.telemetry.model import NodeChange, SampleFigures
from aggregator.telemetry.registry import NodeRegistry
from proto.telemetry.v1.readings import HealthEvent, NodeSample
from tests.support.telemetry import inventory


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def decoded(wire: bytes) -> NodeSample:
    return NodeSample(timestamp=float(wire.decode()), host=None)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(clock):
    return NodeRegistry(clock=clock, decode_sample=decoded, stale_after_intervals=3, problem_window_s=600)


def hello(registry, node="n1", instance="i1", gpus=2, interval=10.0):
    registry.hello(node, cluster_id="c", agent_version="1", agent_instance=instance,
                   inventory=inventory(node, gpus), interval_s=interval)


def figures(ts, cpu=None, gpu=None, mem=None, problems=()):
    return SampleFigures(timestamp=ts, cpu_percent=cpu, gpu_utilization_pct=gpu, memory_used_pct=mem,
                         gpu_problems=problems)


def test_join_sample_and_snapshot(registry, clock):
    changes: list[NodeChange] = []
    registry.subscribe(changes.append)
    hello(registry)
    registry.record_sample("n1", 1, figures(1.0, cpu=10.0, gpu=20.0, mem=30.0), b"1.0")
    clock.now += 10
    registry.record_sample("n1", 2, figures(11.0, cpu=20.0), b"11.0", dropped_samples=4)
    state = registry.get("n1")
    assert state.status == "healthy"
    assert state.latest == NodeSample(timestamp=11.0, host=None)
    assert (state.samples_received, state.dropped_samples, state.last_seen) == (2, 4, 1010.0)
    assert state.rolling.cpu_percent[0] == pytest.approx(10 + 10 * (1 - math.exp(-10 / 60)))
    assert state.rolling.gpu_utilization_pct == (20.0, 20.0, 20.0)
    assert [c.kind for c in changes] == ["joined"]
    assert [s.node_id for s in registry.snapshot()] == ["n1"]
    assert registry.get("nope") is None


def test_stale_after_missed_intervals_and_back(registry, clock):
    changes = []
    registry.subscribe(changes.append)
    hello(registry, interval=10.0)
    clock.now += 30
    assert registry.refresh_status() == []  # exactly 3 intervals: not yet
    clock.now += 0.5
    assert registry.refresh_status() == ["n1"]
    assert registry.get("n1").status == "stale"
    registry.record_sample("n1", 1, figures(2.0), b"2.0")
    assert registry.get("n1").status == "healthy"
    assert [c.node.status for c in changes if c.kind == "status"] == ["stale", "healthy"]


def test_gpu_lost_until_recovered(registry, clock):
    hello(registry)
    registry.record_health("n1", 1, HealthEvent("gpu_lost", clock.now, gpu_index=1))
    assert registry.get("n1").status == "unhealthy"
    assert registry.open_problems("n1") == ("gpu 1 lost",)
    clock.now += 10_000  # a lost GPU does not heal with time
    registry.refresh_status()
    assert registry.get("n1").status == "stale"
    registry.record_health("n1", 2, HealthEvent("gpu_recovered", clock.now, gpu_index=1))
    assert registry.get("n1").status == "healthy"


def test_fatal_xid_opens_a_problem_for_the_window_only(registry, clock):
    hello(registry)
    registry.record_health("n1", 1, HealthEvent("xid", clock.now, gpu_index=0, xid=13))  # an application fault
    assert registry.get("n1").status == "healthy"
    registry.record_health("n1", 2, HealthEvent("xid", clock.now, gpu_index=0, xid=79))
    assert registry.open_problems("n1") == ("gpu 0 xid 79",)
    clock.now += 601
    registry.record_sample("n1", 3, figures(5.0), b"5.0")
    assert registry.get("n1").status == "healthy"


def test_sample_problems_make_it_unhealthy_while_they_last(registry):
    hello(registry)
    registry.record_sample("n1", 1, figures(1.0, problems=("gpu 0 row_remap_failure",)), b"1")
    assert registry.get("n1").status == "unhealthy"
    registry.record_sample("n1", 2, figures(2.0), b"2")
    assert registry.get("n1").status == "healthy"


def test_duplicates_are_per_agent_instance(registry):
    hello(registry, instance="i1")
    registry.record_sample("n1", 1, figures(1.0), b"1")
    assert registry.is_duplicate("n1", "i1", 1)
    assert not registry.is_duplicate("n1", "i1", 2)
    hello(registry, instance="i2")  # the agent restarted and counts from 1 again
    assert not registry.is_duplicate("n1", "i2", 1)


def test_pending_writes_commit_and_restore(registry, clock):
    hello(registry)
    registry.record_sample("n1", 1, figures(1.0, cpu=5.0), b"1.0")
    event = HealthEvent("xid", clock.now, gpu_index=0, xid=79)
    registry.record_health("n1", 2, event)
    pending = registry.take_pending()
    assert [r.node_id for r in pending.nodes] == ["n1"] and pending.inventory_changed == {"n1"}
    assert pending.nodes[0].seq == 2 and [e.event for e in pending.events] == [event]
    assert not registry.take_pending()  # nothing new
    assert registry.committed_seq("n1", "i1") == 0
    assert registry.mark_committed(pending) == {"n1": ("i1", 2)}
    assert registry.committed_seq("n1", "i1") == 2

    again = NodeRegistry(clock=clock, decode_sample=decoded)
    again.restore(pending.nodes, pending.events)
    state = again.get("n1")
    assert state.status == "unhealthy" and state.health_events == (event,)
    assert state.latest == NodeSample(timestamp=1.0, host=None)
    assert again.is_duplicate("n1", "i1", 2) and not again.is_duplicate("n1", "i1", 3)


def test_a_failed_write_is_pending_again(registry):
    hello(registry)
    pending = registry.take_pending()
    registry.requeue(pending)
    assert registry.take_pending().inventory_changed == {"n1"}


def test_a_failing_listener_does_not_stop_ingest(registry):
    def broken(change):
        raise RuntimeError("boom")

    seen = []
    registry.subscribe(broken)
    unsubscribe = registry.subscribe(seen.append)
    hello(registry)
    assert [c.kind for c in seen] == ["joined"]
    unsubscribe()
    hello(registry, node="n2")
    assert len(seen) == 1 and registry.get("n2") is not None


def test_snapshot_decodes_without_holding_up_ingest(clock):
    import threading

    blocked = []

    def decode_while_another_thread_ingests(wire: bytes) -> NodeSample:
        if blocked:  # only the first decode tries
            return decoded(wire)
        other = threading.Thread(target=lambda: reg.record_sample("n2", 2, figures(9.0), b"9.0"))
        other.start()
        other.join(timeout=5)
        blocked.append(other.is_alive())
        return decoded(wire)

    reg = NodeRegistry(clock=clock, decode_sample=decode_while_another_thread_ingests)
    hello(reg, node="n1")
    hello(reg, node="n2")
    reg.record_sample("n1", 1, figures(1.0), b"1.0")
    states = {s.node_id: s for s in reg.snapshot()}
    assert blocked == [False]
    assert states["n1"].latest == NodeSample(timestamp=1.0, host=None)
    assert reg.get("n2").samples_received == 1


def test_a_nodes_fields_are_defined_once():
    """NodeState shows the node's fields by name: each must exist on NodeRecord or NodeMarks with the same type."""
    from dataclasses import fields

    from aggregator.telemetry.model import STATE_FIELDS_FROM_NODE, NodeMarks, NodeRecord, NodeState

    node_types = {f.name: f.type for f in (*fields(NodeRecord), *fields(NodeMarks))}
    state_types = {f.name: f.type for f in fields(NodeState)}
    assert set(state_types) - set(STATE_FIELDS_FROM_NODE) == {"latest", "health_events"}
    assert {name: state_types[name] for name in STATE_FIELDS_FROM_NODE} == {
        name: node_types[name] for name in STATE_FIELDS_FROM_NODE
    }
