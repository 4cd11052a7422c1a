"""Issue 13 as regression tests, gRPC side: hostile or broken agent input, on loopback, real SQLite.

Cases: out-of-range numbers (1), a row that cannot be written (1), a second
hello for a live node id (2), node ids and identifiers outside their
character sets (8), intervals and clocks out of range (8), the node cap (8).
"""

from __future__ import annotations

import logging
import re
import time

import grpc
import pytest

from agent.stream.client import StreamConfig, TelemetryStream
from aggregator.telemetry.model import SampleFigures
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import (
    TOKEN,
    AggregatorProcess,
    AggregatorThread,
    RawStream,
    get_node,
    inventory,
    list_nodes,
    sample,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _hello(node_id: str, *, instance: str = "inst-1", interval_s: float = 0.2, **fields) -> bytes:
    hello = pb.Hello(node_id=node_id, cluster_id="test-cluster", agent_version="raw", agent_instance=instance,
                     inventory=convert.inventory_to_pb(inventory(node_id if "\n" not in node_id else "x")),
                     interval_s=interval_s)
    for name, value in fields.items():
        setattr(hello, name, value)
    return pb.AgentMessage(seq=0, hello=hello).SerializeToString()


def _sample(seq: int, n: int = 1, **message_fields) -> bytes:
    return pb.AgentMessage(seq=seq, sample=convert.sample_to_pb(sample(n)), **message_fields).SerializeToString()


def _health(seq: int, event: HealthEvent) -> bytes:
    return pb.AgentMessage(seq=seq, health=convert.health_to_pb(event)).SerializeToString()


def _agent(address: str, node_id: str) -> TelemetryStream:
    config = StreamConfig(address=address, node_id=node_id, cluster_id="test-cluster", agent_version="test",
                          token=TOKEN, backoff_initial_s=0.05, backoff_max_s=0.3, interval_s=0.2)
    stream = TelemetryStream(config, inventory(node_id))
    stream.start()
    return stream


def _acked(stream: TelemetryStream, what: str) -> int:
    """Send a sample and wait until it is acknowledged (stored); returns its seq."""
    seq = stream.send_sample(sample(int(time.time()) % 1000))
    wait_for(lambda: stream.stats().acked_seq >= seq, what=what, timeout_s=20)
    return seq


@pytest.fixture
def aggregator(tmp_path):
    agg = AggregatorProcess(tmp_path).start()
    yield agg
    agg.stop()


@pytest.fixture
def in_process(tmp_path):
    agg = AggregatorThread(tmp_path, http=True)
    yield agg
    agg.close()


# ---------------------------------------------------------------- 1: numbers SQLite cannot hold


@pytest.mark.parametrize(
    "message, field",
    [
        pytest.param(_sample(2**63), "seq: 9223372036854775808 is over 9223372036854775807", id="seq"),
        pytest.param(_sample(1, dropped_samples=2**63), "dropped_samples: 9223372036854775808 is over", id="dropped"),
        pytest.param(_health(1, HealthEvent("xid", 1_764_400_000.0, gpu_index=0, xid=2**63)),
                     "health.xid: 9223372036854775808 is over", id="xid-2^63"),
        pytest.param(_health(1, HealthEvent("xid", 1_764_400_000.0, gpu_index=0, xid=2**32)),
                     "health.xid: 4294967296 is over", id="xid-2^32"),
    ],
)
def test_numbers_out_of_range_are_refused_and_every_other_node_keeps_being_stored(aggregator, message, field):
    """Before: accepted, then OverflowError in the store; the batch failed every 0.1 s and no node's
    acknowledgements advanced until a restart."""
    good = _agent(aggregator.address, "good")
    try:
        _acked(good, "the good node's first ack")
        raw = RawStream(aggregator.address)
        replies, code, details = raw.exchange([_hello("evil"), message])
        raw.close()
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details
        assert [r.refusal.reason for r in replies if r.WhichOneof("body") == "refusal"] == [details]
        _acked(good, "the good node's ack after the refusal")  # persistence never stopped
    finally:
        good.stop()
    aggregator.stop()
    aggregator.start()  # what was acknowledged is on disk
    assert get_node(aggregator.address, "good").HasField("latest_sample")
    assert "evil" not in list_nodes(aggregator.address) or not get_node(aggregator.address, "evil").HasField("latest_sample")


def test_a_row_that_cannot_be_written_is_set_aside_counted_logged_once_and_shown(in_process, caplog):
    """Independently of the edge checks: one unwritable row never blocks the others."""
    registry = in_process.aggregator.registry
    ingest = in_process.aggregator.ingest
    good = _agent(in_process.address, "good")
    try:
        _acked(good, "first ack")
        raw = RawStream(in_process.address)
        assert raw.exchange([_hello("bad")])[1] == grpc.StatusCode.OK
        raw.close()
        caplog.set_level(logging.INFO, logger="aggregator.telemetry.ingest")
        wire = convert.sample_to_pb(sample(1)).SerializeToString()
        # a value past the edge (as a future bug might let through): SQLite cannot hold it
        registry.record_sample("bad", 2**64, SampleFigures(timestamp=time.time()), wire)
        wait_for(lambda: registry.get("bad").unwritable, what="the bad node marked unwritable")
        for _ in range(3):  # the others go on, commit after commit
            _acked(good, "the good node's acks while the bad row is set aside")
        state = registry.get("bad")
        assert "OverflowError" in state.unwritable and state.status == "unhealthy"
        assert ingest.rows_set_aside == 1
        logged = [r.getMessage() for r in caplog.records if "cannot be stored" in r.getMessage()]
        assert len(logged) == 1 and logged[0].startswith("node bad: its row cannot be stored (OverflowError")
        metrics = _get(in_process.http_url + "/metrics")
        assert re.search(r'aios_cluster_store_rows_set_aside_total\{cluster="test-cluster"\} 1\.0', metrics)
        assert re.search(r'aios_cluster_nodes_unwritable\{cluster="test-cluster"\} 1\.0', metrics)

        raw = RawStream(in_process.address)  # the agent restarts: a fresh instance counts from 1 again
        assert raw.exchange([_hello("bad", instance="inst-2"), _sample(1)])[1] == grpc.StatusCode.OK
        raw.close()
        wait_for(lambda: not registry.get("bad").unwritable, what="the bad node stored again")
        assert not any(p.startswith("node not stored") for p in registry.open_problems("bad"))
    finally:
        good.stop()


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


# ---------------------------------------------------------------- 2: one node id, two agents


def test_a_second_hello_ends_the_first_stream_and_two_live_claimants_are_reported(in_process, caplog):
    """Before: the server cancelled the old task but the first agent's call never ended; it reported
    connected while its buffer filled, and the newcomer's data replaced the node's."""
    caplog.set_level(logging.INFO, logger="aggregator.telemetry.ingest")
    first = _agent(in_process.address, "twin")
    second = None
    try:
        _acked(first, "the first agent's ack")
        assert first.stats().connects == 1
        second = _agent(in_process.address, "twin")
        _acked(second, "the second agent's ack")
        # the first agent saw its stream end (server side) and came back: refused while the other lives
        wait_for(lambda: first.stats().connects >= 2, what="the first agent to reconnect")
        wait_for(lambda: in_process.aggregator.ingest.node_id_conflicts == 1, what="the conflict to be found")
        warnings = [r.getMessage() for r in caplog.records if "two live agents claim node id twin" in r.getMessage()]
        assert len(warnings) == 1
        assert first.agent_instance in warnings[0] and second.agent_instance in warnings[0]
        assert warnings[0].count("ipv4:127.0.0.1:") == 2  # both peers named
        events = in_process.aggregator.registry.get("twin").health_events
        assert [e.kind for e in events].count("node_id_conflict") == 1
        _acked(second, "the second agent still stored")
        time.sleep(0.5)  # the first keeps retrying meanwhile: still one conflict, not one per retry
        assert in_process.aggregator.ingest.node_id_conflicts == 1
        second.stop()
        second = None
        _acked(first, "the first agent takes its node id back once the other is gone")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_an_agent_reconnecting_replaces_its_own_half_open_stream(aggregator):
    """The same agent instance saying hello again (its old connection half-open): quietly replaced."""
    blocked = RawStream(aggregator.address)
    import threading

    outcome: dict = {}

    def hold() -> None:
        def messages():
            yield _hello("again")
            yield _sample(1)
            time.sleep(30)  # never half-closes: only the server can end this stream

        try:
            for _ in blocked.method(messages(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=60):
                pass
            outcome["code"] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            outcome["code"], outcome["details"] = e.code(), e.details()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    wait_for(lambda: get_node(aggregator.address, "again") is not None, what="the first stream's hello")
    raw = RawStream(aggregator.address)
    replies, code, _ = raw.exchange([_hello("again"), _sample(2, 2)])
    raw.close()
    assert code == grpc.StatusCode.OK
    holder.join(20)
    assert outcome["code"] == grpc.StatusCode.ABORTED and "replaced this one" in outcome["details"]
    assert "two live agents" not in aggregator.log_text()
    blocked.close()


# ---------------------------------------------------------------- 8: identifiers, intervals, clocks, the cap


@pytest.mark.parametrize(
    "hello, field",
    [
        pytest.param(_hello("evil\nnode forged connected from 10.0.0.1"), "hello.node_id: 'evil\\nnode forged",
                     id="newline"),
        pytest.param(_hello("-leading-dash"), "hello.node_id", id="dash"),
        pytest.param(_hello("a" * 254), "hello.node_id", id="254-chars"),
        pytest.param(_hello("ok-node", instance="\x1b[31mred"), "hello.agent_instance", id="escape"),
        pytest.param(_hello("ok-node", cluster_id="two words"), "hello.cluster_id", id="space"),
        pytest.param(_hello("ok-node", interval_s=1e-9), "hello.interval_s: 1e-09 is not between 0.1 and 3600 seconds",
                     id="interval-1e-9"),
        pytest.param(_hello("ok-node", interval_s=1e300), "hello.interval_s: 1e+300 is not between", id="interval-1e300"),
        pytest.param(_hello("ok-node", interval_s=0.0), "hello.interval_s", id="interval-0"),
    ],
)
def test_identifiers_and_intervals_out_of_range_are_refused(aggregator, hello, field):
    raw = RawStream(aggregator.address)
    replies, code, details = raw.exchange([hello])
    raw.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details
    assert list_nodes(aggregator.address) == {}
    # no log line carries a raw control character, so none can be forged
    log = aggregator.log_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", log)
    assert not any(line.startswith("node forged") for line in log.splitlines())


def test_an_inventory_with_control_characters_is_refused(aggregator):
    inv = convert.inventory_to_pb(inventory("ctl"))
    inv.host.hostname = "host\rINFO fake line"
    hello = pb.AgentMessage(seq=0, hello=pb.Hello(node_id="ctl", agent_instance="i", inventory=inv, interval_s=1.0))
    raw = RawStream(aggregator.address)
    _, code, details = raw.exchange([hello.SerializeToString()])
    raw.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("hello.inventory.host.hostname: 'host\\rINFO fake line' holds a control character")


def test_a_clock_far_ahead_is_marked_and_cannot_keep_a_problem_open(in_process):
    """Timestamps far in the future were accepted as they were: a fatal XID stamped a year ahead
    kept its node unhealthy for a year."""
    ahead = time.time() + 365 * 86400
    raw = RawStream(in_process.address)
    xid = HealthEvent("xid", ahead, gpu_index=0, xid=79, message="fell off the bus")
    _, code, _ = raw.exchange([_hello("skewed"), _health(1, xid)])
    raw.close()
    assert code == grpc.StatusCode.OK
    state = in_process.aggregator.registry.get("skewed")
    assert state.clock_skew_s > 364 * 86400
    kinds = {e.kind: e for e in state.health_events}
    assert "clock_skew" in kinds and "ahead of the aggregator's clock" in kinds["clock_skew"].message
    assert kinds["xid"].timestamp <= time.time()  # taken as its arrival time, so the window closes


def test_more_nodes_than_the_cap_are_refused(tmp_path):
    agg = AggregatorProcess(tmp_path, extra_args=("--max-nodes", "2")).start()
    try:
        raw = RawStream(agg.address)
        assert raw.exchange([_hello("n1")])[1] == grpc.StatusCode.OK
        assert raw.exchange([_hello("n2")])[1] == grpc.StatusCode.OK
        _, code, details = raw.exchange([_hello("n3")])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "holds 2 nodes, its limit" in details
        assert raw.exchange([_hello("n1", instance="restarted")])[1] == grpc.StatusCode.OK  # known ids still come back
        raw.close()
        assert sorted(list_nodes(agg.address)) == ["n1", "n2"]
    finally:
        agg.stop()
