"""AgentDaemon: sampling runs, inventory updates, observers, interval sources."""

import dataclasses

import pytest

from agent.sampling.daemon import AgentDaemon, interval_from_env
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import ScriptedReader, inventory


class Sink:
    def __init__(self):
        self.samples, self.inventories, self.intervals = [], [], []

    def send_sample(self, sample):
        self.samples.append(sample)
        return len(self.samples)

    def send_inventory(self, inv):
        self.inventories.append(inv)
        return 0

    def set_interval(self, interval_s):
        self.intervals.append(interval_s)


def test_interval_from_env_prefers_ours_and_accepts_the_old_name():
    assert interval_from_env({}) is None
    assert interval_from_env({"COLLECT_INTERVAL": "30"}) == 30.0
    assert interval_from_env({"AIOS_INTERVAL_S": "5", "COLLECT_INTERVAL": "30"}) == 5.0
    with pytest.raises(ValueError, match="AIOS_INTERVAL_S='ten'"):
        interval_from_env({"AIOS_INTERVAL_S": "ten"})
    with pytest.raises(ValueError, match="must be > 0"):
        interval_from_env({"COLLECT_INTERVAL": "0"})


def test_ticks_send_samples_and_observers_see_them():
    reader, sink = ScriptedReader("n"), Sink()
    daemon = AgentDaemon(reader, sink, interval_s=1.0, inventory_every=100)
    seen_inv, seen_samples = [], []
    daemon.inventory_observers.append(seen_inv.append)
    daemon.sample_observers.append(seen_samples.append)
    daemon.sample_observers.insert(0, lambda s: 1 / 0)  # a broken observer changes nothing
    assert daemon.initial_inventory() == inventory("n")
    daemon.tick()
    daemon.tick()
    assert [s.timestamp for s in sink.samples] == [1_764_400_001.0, 1_764_400_002.0]
    assert seen_samples == sink.samples and seen_inv == [inventory("n")]
    assert sink.inventories == []  # unchanged: no update sent


def test_a_lost_gpu_event_rereads_the_inventory_and_sends_the_change():
    reader, sink = ScriptedReader("n"), Sink()
    daemon = AgentDaemon(reader, sink, inventory_every=100)
    daemon.initial_inventory()
    reader.gpus = 1
    original = reader.sample

    def with_event():
        s = original()
        return dataclasses.replace(s, health_events=(HealthEvent("gpu_lost", s.timestamp, gpu_index=1),))

    reader.sample = with_event
    daemon.tick()
    assert [len(i.gpus) for i in sink.inventories] == [1]
    assert daemon.counters.inventory_updates == 1


def test_instruction_changes_the_interval():
    sink = Sink()
    daemon = AgentDaemon(ScriptedReader("n"), sink, interval_s=10.0)
    daemon.on_instruction(pb.Instruction(interval_s=2.0))
    daemon.on_instruction(pb.Instruction())  # no interval: nothing
    assert daemon.interval_s == 2.0 and sink.intervals == [2.0]


def test_scheduler_runs_ticks_at_the_interval():
    reader, sink = ScriptedReader("n"), Sink()
    daemon = AgentDaemon(reader, sink, interval_s=0.05)
    daemon.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while len(sink.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        daemon.stop()
    assert len(sink.samples) >= 3
