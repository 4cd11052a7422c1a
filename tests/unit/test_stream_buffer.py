"""The agent stream's buffer rules and backoff (no network: the stream is not started)."""

import pytest

from agent.stream.client import DEFAULT_BUFFER_BYTES, StreamConfig, TelemetryStream, buffer_bytes_from_env
from proto.common.backoff import backoff_delay
from proto.telemetry.v1 import convert
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import inventory, sample


def stream(limit=3):
    return TelemetryStream(StreamConfig(address="127.0.0.1:1", node_id="n", buffer_limit=limit), inventory("n"))


def test_full_buffer_drops_oldest_samples_and_reports_the_count():
    s = stream(limit=3)
    seqs = [s.send_sample(sample(i)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    buffered = s._unsent_after(0)
    assert [m.seq for m in buffered] == [3, 4, 5]
    # the first message after a drop carries the count; a dropped carrier passes it on
    assert [m.dropped_samples for m in buffered] == [0, 1, 1]
    assert s.stats().dropped_samples == 2
    s.send_sample(sample(6))  # drops seq 3 (which carried 0) -> count 1
    assert [(m.seq, m.dropped_samples) for m in s._unsent_after(0)] == [(4, 1), (5, 1), (6, 1)]


def test_health_events_are_never_dropped():
    s = stream(limit=2)
    s.send_health(HealthEvent("gpu_lost", 1.0, gpu_index=0))
    s.send_sample(sample(1, events=(HealthEvent("xid", 2.0, gpu_index=1, xid=79),)))
    for i in range(2, 6):
        s.send_sample(sample(i))
    bodies = [(m.seq, m.WhichOneof("body")) for m in s._unsent_after(0)]
    assert bodies[:2] == [(1, "health"), (2, "health")]
    assert [b for _, b in bodies].count("sample") == 1
    # only health left: the limit may be exceeded rather than drop one
    s2 = stream(limit=1)
    for i in range(3):
        s2.send_health(HealthEvent("xid", float(i + 1), xid=13))
    assert s2.stats().buffered == 3


def test_acks_release_and_refusals_drop_one_message():
    s = stream(limit=10)
    for i in range(1, 5):
        s.send_sample(sample(i))
    s._acknowledge(2)
    assert [m.seq for m in s._unsent_after(0)] == [3, 4]
    s._acknowledge(1)  # an old ack changes nothing
    assert s.stats().acked_seq == 2
    s._refuse(3, "sample.gpus[0].power_draw_w: nan")
    assert [m.seq for m in s._unsent_after(0)] == [4]
    assert s.stats().refused == 1
    assert s.wait_acked(3, timeout_s=0.01)  # 3 is gone (refused), so "up to 3" is settled
    assert not s.wait_acked(4, timeout_s=0.01)


def test_hello_carries_the_latest_inventory_and_interval():
    s = stream()
    s.send_inventory(inventory("n", gpus=1))
    s.set_interval(2.5)
    hello = s._hello().hello
    assert (len(hello.inventory.gpus), hello.interval_s, hello.node_id) == (1, 2.5, "n")
    assert hello.agent_instance == s.agent_instance and len(s.agent_instance) == 32


@pytest.mark.parametrize("attempt, ceiling", [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (100, 30.0)])
def test_backoff_is_capped_exponential_with_full_jitter(attempt, ceiling):
    assert backoff_delay(attempt, 0.5, 30.0, rand=lambda: 1.0) == ceiling
    assert backoff_delay(attempt, 0.5, 30.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, 0.5, 30.0, rand=lambda: 0.5) == ceiling / 2


def test_acknowledged_samples_are_forgotten_entirely():
    s = stream(limit=10)
    for i in range(1, 101):
        s.send_sample(sample(i))
        s._acknowledge(i)
    assert s.stats().buffered == 0 and len(s._sample_seqs) == 0


def test_the_byte_bound_drops_the_oldest_samples_first_and_counts_them_dropped():
    # 64 GPUs a sample: ~2 KB serialized each; room for 3 of them, far under the count bound
    one = convert.sample_to_pb(sample(1, gpus=64)).ByteSize()
    assert one > 1500
    s = TelemetryStream(StreamConfig(address="127.0.0.1:1", node_id="n", buffer_limit=1000,
                                     buffer_bytes=3 * one + one // 2), inventory("n"))
    s.send_health(HealthEvent("gpu_lost", 1.0, gpu_index=0))
    for i in range(1, 8):
        s.send_sample(sample(i, gpus=64))
    kept = s._unsent_after(0)
    # the health event stays (never dropped); of the samples only the newest three fit beside it
    assert [m.WhichOneof("body") for m in kept] == ["health", "sample", "sample", "sample"]
    assert [m.seq for m in kept] == [1, 6, 7, 8]
    assert [m.sample.timestamp for m in kept[1:]] == [sample(i).timestamp for i in (5, 6, 7)]
    assert s.stats().dropped_samples == 4
    assert sum(m.dropped_samples for m in kept) == 4  # reported, none lost
    stats = s.stats()
    assert stats.buffered == 4 and stats.buffered_bytes == sum(len(m.SerializeToString()) for m in kept)
    assert stats.buffered_bytes <= 3 * one + one // 2
    # health events past the byte bound are kept too (the bound may be exceeded by them)
    for i in range(5):
        s.send_health(HealthEvent("xid", 10.0 + i, gpu_index=1, xid=79, message="x" * one))
    assert [m.WhichOneof("body") for m in s._unsent_after(0)].count("health") == 6
    s._acknowledge(s.stats().last_seq)
    assert s.stats().buffered_bytes == 0 and s.stats().buffered == 0


def test_the_byte_bound_from_the_environment_is_checked():
    assert buffer_bytes_from_env({}) == DEFAULT_BUFFER_BYTES == 16 * 1024 * 1024
    assert buffer_bytes_from_env({"AIOS_STREAM_BUFFER_BYTES": "1048576"}) == 1048576
    for bad in ("16Mi", "-1", "100", str(2 * 1024**3)):
        with pytest.raises(ValueError, match="AIOS_STREAM_BUFFER_BYTES"):
            buffer_bytes_from_env({"AIOS_STREAM_BUFFER_BYTES": bad})
