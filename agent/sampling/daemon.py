"""The agent daemon: sample the node at an interval and stream it to the aggregator.

APScheduler (3.x, BackgroundScheduler) runs one sampling job; each run reads
the node through a `NodeReader` (`.inventory()`, `.sample()`), hands the
sample to the stream, and calls the observers. The inventory is read again
every `inventory_every` samples and at once when a sample carries a GPU
lost/recovered event; when it changed, the stream sends an inventory update.

Observers (hook points for the Kubernetes annotator and the metrics
exporter): `inventory_observers` are called with every inventory read that
differs from the previous one (and the first), `sample_observers` with every
sample. They run on the sampling thread, so they must not block; one that
raises is logged and the others still run.

Health events that must not wait for the next sample (XIDs from the GPU
collector's event thread) come in through `push_health`: sent to the stream
at once and handed to `health_observers`, on the caller's thread. They are
not part of any sample's `health_events`, so nothing sees them twice.

Liveness: `last_run_at` is when the sampling job last finished (the clock
passed in, monotonic); `agent.liveness` judges it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from proto.common.settings import number_setting
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

_T = TypeVar("_T")

__all__ = ["DEFAULT_INTERVAL_S", "AgentDaemon", "Reader", "Sink", "interval_from_env"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
_JOB_ID = "sample"
_INVENTORY_EVENTS = frozenset({"gpu_lost", "gpu_recovered"})


class Reader(Protocol):
    def inventory(self) -> NodeInventory: ...

    def sample(self) -> NodeSample: ...


class Sink(Protocol):
    """Where samples go (the telemetry stream)."""

    def send_sample(self, sample: NodeSample) -> int: ...

    def send_inventory(self, inventory: NodeInventory) -> int: ...

    def send_health(self, event: HealthEvent) -> int: ...

    def set_interval(self, interval_s: float) -> None: ...


def interval_from_env(env: Mapping[str, str]) -> float | None:
    """`AIOS_INTERVAL_S`, or the old daemon's `COLLECT_INTERVAL`; None when neither is set."""
    for name in ("AIOS_INTERVAL_S", "COLLECT_INTERVAL"):
        if env.get(name):
            return float(number_setting(env, name, 0.0, low=0, high=3600, low_exclusive=True, unit="seconds"))
    return None


@dataclass
class _Counters:
    samples: int = 0
    sample_failures: int = 0
    inventory_updates: int = 0
    pushed_health_events: int = 0


class AgentDaemon:
    def __init__(
        self,
        reader: Reader,
        sink: Sink,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        inventory_every: int = 6,
        scheduler: BackgroundScheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.sink = sink
        self.interval_s = interval_s
        self.inventory_every = max(1, inventory_every)
        self.inventory_observers: list[Callable[[NodeInventory], None]] = []
        self.sample_observers: list[Callable[[NodeSample], None]] = []
        self.health_observers: list[Callable[[HealthEvent], None]] = []
        self.counters = _Counters()
        self._clock = clock
        self.started_at: float | None = None  # clock() at start()
        self.last_run_at: float | None = None  # clock() when the sampling job last finished
        self._scheduler = scheduler or BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._inventory: NodeInventory | None = None
        self._lock = threading.Lock()
        self._lock_counters = threading.Lock()

    def initial_inventory(self, inventory: NodeInventory | None = None) -> NodeInventory:
        """Take (or read) the starting inventory, the stream's hello, and tell the observers."""
        self._inventory = inventory if inventory is not None else self.reader.inventory()
        self._notify(self.inventory_observers, self._inventory)
        return self._inventory

    def start(self) -> None:
        if self._inventory is None:
            self.initial_inventory()
        self.started_at = self._clock()
        self._scheduler.add_job(self.tick, "interval", seconds=self.interval_s, id=_JOB_ID, next_run_time=_now())
        self._scheduler.start()
        log.info("sampling every %.1f s", self.interval_s)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def set_interval(self, interval_s: float) -> None:
        """A new interval (from an aggregator Instruction, or an operator)."""
        if interval_s <= 0 or interval_s == self.interval_s:
            return
        log.info("interval %.1f s -> %.1f s", self.interval_s, interval_s)
        self.interval_s = interval_s
        self.sink.set_interval(interval_s)
        if self._scheduler.running:
            self._scheduler.reschedule_job(_JOB_ID, trigger="interval", seconds=interval_s)

    def on_instruction(self, instruction: pb.Instruction) -> None:
        if instruction.HasField("interval_s"):
            self.set_interval(instruction.interval_s)

    def push_health(self, event: HealthEvent) -> None:
        """A health event to deliver now, not with the next sample (any thread)."""
        try:
            self.sink.send_health(event)
        except Exception:
            log.exception("sending health event %s failed", event.kind)
        with self._lock_counters:
            self.counters.pushed_health_events += 1
        self._notify(self.health_observers, event)

    def tick(self) -> None:
        """One sampling run (the scheduled job; also callable directly)."""
        with self._lock:
            try:
                self._tick()
            finally:
                self.last_run_at = self._clock()

    def _tick(self) -> None:
        try:
            sample = self.reader.sample()
        except Exception:
            self.counters.sample_failures += 1
            log.exception("sampling failed")
            return
        self.counters.samples += 1
        recheck = self.counters.samples % self.inventory_every == 0 or any(
            e.kind in _INVENTORY_EVENTS for e in sample.health_events
        )
        if recheck:
            self._refresh_inventory()
        self.sink.send_sample(sample)
        self._notify(self.sample_observers, sample)

    def _refresh_inventory(self) -> None:
        try:
            inventory = self.reader.inventory()
        except Exception:
            log.exception("reading the inventory failed")
            return
        if inventory != self._inventory:
            self._inventory = inventory
            self.counters.inventory_updates += 1
            self.sink.send_inventory(inventory)
            self._notify(self.inventory_observers, inventory)

    @staticmethod
    def _notify(observers: Iterable[Callable[[_T], None]], value: _T) -> None:
        for observer in list(observers):
            try:
                observer(value)
            except Exception:
                log.exception("observer %r failed", observer)


def _now() -> datetime:
    return datetime.now(timezone.utc)
