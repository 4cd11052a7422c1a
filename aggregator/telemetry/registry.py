"""The live registry of nodes: what every agent last said, and each node's status.

The gRPC ingest feeds it (already validated), the store persists what it
hands out in `take_pending()`, and everyone else reads `snapshot()` / `get()`
or subscribes to `NodeChange`s. It holds no protobuf: the latest sample is
kept as opaque bytes plus the figures the registry needs, and decoded (by the
`decode_sample` function passed in) only when somebody reads it, because
decoding a full sample costs several times what receiving it does.

Status rule:
- stale: nothing heard for more than `stale_after_intervals` x the agent's
  interval; healthy/unhealthy again with the next message;
- unhealthy: reporting, with an open GPU problem under the one GPU health
  rule (`proto/health/gpu_rule.py`, `health_rule`): a lost GPU, a fatal XID
  (the XID catalogue's reset/reboot/support buckets), uncorrectable ECC
  errors or a row-remap failure; events count for `problem_window_s`. The
  sample's part of the rule is judged at the wire edge (`wire_checks`), so
  only its labels are kept here;
  - the store could not write the node's row at the last commit (`unwritable`);
- healthy otherwise.

Timestamps ahead of the aggregator's clock by more than `clock_tolerance_s`
mark the node (`clock_skew_s`, logged once, a `clock_skew` event) and are taken
as the arrival time, so a wrong clock cannot keep a problem "recent" forever.
The registry's own events (`AGGREGATOR_EVENT_KINDS`: a node id claimed by two
live agents, a skewed clock) are stored like an agent's, under the agent
instance `"aggregator"`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from aggregator.telemetry.model import (
    STATE_FIELDS_FROM_NODE,
    NodeChange,
    NodeMarks,
    NodeRecord,
    NodeState,
    PendingWrite,
    RollingFigures,
    SampleFigures,
    StoredEvent,
)
from proto.common.ewma import LOAD_AVERAGE_WINDOWS_S, ewma_update, ewma_weights
from proto.health.gpu_rule import HealthRule, gpu_problem_labels
from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

__all__ = [
    "AGGREGATOR_EVENT_KINDS",
    "AGGREGATOR_INSTANCE",
    "CLOCK_TOLERANCE_S",
    "ROLLING_WINDOWS_S",
    "NodeOverview",
    "NodeRecord",
    "NodeRegistry",
    "PendingWrite",
    "SampleFigures",
    "StoredEvent",
    "UnknownNode",
]

log = logging.getLogger(__name__)

ROLLING_WINDOWS_S = LOAD_AVERAGE_WINDOWS_S  # the 1/5/15-minute figures (proto/common/ewma.py)
CLOCK_TOLERANCE_S = 300.0
AGGREGATOR_EVENT_KINDS = ("node_id_conflict", "clock_skew")
AGGREGATOR_INSTANCE = "aggregator"  # the agent instance the registry's own events are stored under
_MAX_COUNT = 2**63 - 1  # counters saturate at what SQLite's INTEGER holds


class UnknownNode(KeyError):
    """A message for a node the registry does not hold (it was removed meanwhile)."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id

    def __str__(self) -> str:
        return f"node {self.node_id!r} is not in the registry (removed?)"


@dataclass(frozen=True)
class NodeOverview:
    """A node for listings: its state without the (costly to decode) latest sample."""

    state: NodeState  # state.latest is None here
    figures: SampleFigures | None  # from the latest sample
    problems: tuple[str, ...]  # open GPU problems (see the status rule)


@dataclass
class _Node(NodeMarks, NodeRecord):  # NodeRecord's fields first (they have no defaults)
    """A registry entry: the record, the aggregator's marks, and the registry's own bookkeeping."""

    committed_seq: int = 0  # highest seq on disk for agent_instance
    latest_decoded: NodeSample | None = None
    health: deque = field(default_factory=deque)  # HealthEvent, most recent first


class NodeRegistry:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        decode_sample: Callable[[bytes], NodeSample],
        stale_after_intervals: float = 3.0,
        problem_window_s: float = 600.0,
        max_health_events: int = 50,
        clock_tolerance_s: float = CLOCK_TOLERANCE_S,
    ) -> None:
        self._clock = clock
        self._decode = decode_sample
        self.stale_after_intervals = stale_after_intervals
        self.problem_window_s = problem_window_s
        self.health_rule = HealthRule(event_window_s=problem_window_s)  # the metrics judge with the same
        self.max_health_events = max_health_events
        self.clock_tolerance_s = clock_tolerance_s
        self._own_seq = 0  # seq of the registry's own events (milliseconds, so unique across restarts)
        self._nodes: dict[str, _Node] = {}
        self._dirty: set[str] = set()
        self._inventory_dirty: set[str] = set()
        self._new_events: list[StoredEvent] = []
        self._listeners: list[Callable[[NodeChange], None]] = []
        # Ingest runs on one asyncio loop, readers (HTTP, checkers) may be threads.
        self._lock = threading.RLock()

    # ------------------------------------------------------------ reading

    def snapshot(self) -> list[NodeState]:
        # Decoding every changed sample takes ~0.25 ms each (a second for
        # 5,000 nodes): do it outside the lock so ingest is not held up.
        with self._lock:
            todo = [(n, n.latest_sample) for n in self._nodes.values() if n.latest_decoded is None and n.latest_sample]
        decoded = [(node, wire, self._decode(wire)) for node, wire in todo]
        with self._lock:
            for node, wire, sample in decoded:
                if node.latest_sample is wire:  # no newer sample arrived meanwhile
                    node.latest_decoded = sample
            return [self._state(n) for n in sorted(self._nodes.values(), key=lambda n: n.node_id)]

    def get(self, node_id: str) -> NodeState | None:
        with self._lock:
            node = self._nodes.get(node_id)
            return None if node is None else self._state(node)

    def subscribe(self, callback: Callable[[NodeChange], None]) -> Callable[[], None]:
        """Call `callback` with every change; returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def overview(self) -> list[NodeOverview]:
        with self._lock:
            now = self._clock()
            return [
                self._overview(n, now) for n in sorted(self._nodes.values(), key=lambda n: n.node_id)
            ]

    def overview_of(self, node_id: str) -> NodeOverview | None:
        with self._lock:
            node = self._nodes.get(node_id)
            return None if node is None else self._overview(node, self._clock())

    def _overview(self, node: _Node, now: float) -> NodeOverview:
        return NodeOverview(self._state(node, decode=False), node.figures, self._problems(node, now))

    def open_problems(self, node_id: str) -> tuple[str, ...]:
        with self._lock:
            node = self._nodes.get(node_id)
            return () if node is None else self._problems(node, self._clock())

    def knows(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._nodes

    def node_count(self) -> int:
        with self._lock:
            return len(self._nodes)

    def total_samples(self) -> int:
        with self._lock:
            return sum(n.samples_received for n in self._nodes.values())

    # ------------------------------------------------------------ ingest

    def hello(
        self,
        node_id: str,
        *,
        cluster_id: str,
        agent_version: str,
        agent_instance: str,
        inventory: NodeInventory,
        interval_s: float,
    ) -> None:
        """An agent (re)connected. A new agent instance starts counting seq from 1."""
        now = self._clock()
        with self._lock:
            node = self._nodes.get(node_id)
            joined = node is None
            if node is None:
                node = _Node(node_id=node_id, inventory=inventory, first_seen=now, last_seen=now)
                self._nodes[node_id] = node
            inventory_changed = not joined and node.inventory != inventory
            if node.agent_instance != agent_instance:
                node.agent_instance = agent_instance
                node.seq = 0
                node.committed_seq = 0
            node.inventory = inventory
            node.cluster_id = cluster_id
            node.agent_version = agent_version
            if interval_s > 0:
                node.interval_s = interval_s
            node.last_seen = now
            self._dirty.add(node_id)
            if joined or inventory_changed:
                self._inventory_dirty.add(node_id)
            if joined:
                node.status = self._compute_status(node, now)
                self._emit("joined", node, now)
            elif inventory_changed:
                self._emit("inventory", node, now)
            self._update_status(node, now)

    def is_duplicate(self, node_id: str, agent_instance: str, seq: int) -> bool:
        with self._lock:
            node = self._nodes.get(node_id)
            return (
                node is not None and node.agent_instance == agent_instance and seq <= node.seq
            )

    def record_sample(
        self, node_id: str, seq: int, figures: SampleFigures, wire: bytes, dropped_samples: int = 0
    ) -> None:
        now = self._clock()
        with self._lock:
            node = self._known(node_id)
            timestamp = self._judge_clock(node, figures.timestamp, now, "sample.timestamp")
            if timestamp != figures.timestamp:
                figures = replace(figures, timestamp=timestamp)
            previous = node.figures
            dt = (figures.timestamp - previous.timestamp) if previous else 0.0
            w = ewma_weights(dt)
            rolling = node.rolling
            node.rolling = RollingFigures(
                cpu_percent=ewma_update(rolling.cpu_percent, figures.cpu_percent, dt, w),
                gpu_utilization_pct=ewma_update(rolling.gpu_utilization_pct, figures.gpu_utilization_pct, dt, w),
                memory_used_pct=ewma_update(rolling.memory_used_pct, figures.memory_used_pct, dt, w),
            )
            node.figures = figures
            node.latest_sample = wire
            node.latest_decoded = None
            node.samples_received = min(node.samples_received + 1, _MAX_COUNT)
            node.dropped_samples = min(node.dropped_samples + dropped_samples, _MAX_COUNT)
            self._touch(node, seq, now)

    def record_health(self, node_id: str, seq: int, event: HealthEvent) -> None:
        now = self._clock()
        with self._lock:
            node = self._known(node_id)
            timestamp = self._judge_clock(node, event.timestamp, now, "health.timestamp")
            if timestamp != event.timestamp:
                event = replace(event, timestamp=timestamp)
            self._remember_event(node, event)
            self._new_events.append(StoredEvent(node_id, node.agent_instance, seq, event))
            self._touch(node, seq, now)
            self._emit("health", node, now, health=event)

    def record_inventory(self, node_id: str, seq: int, inventory: NodeInventory) -> None:
        now = self._clock()
        with self._lock:
            node = self._known(node_id)
            changed = node.inventory != inventory
            node.inventory = inventory
            self._touch(node, seq, now)
            if changed:
                self._inventory_dirty.add(node_id)
                self._emit("inventory", node, now)

    def note_dropped(self, node_id: str, dropped_samples: int) -> None:
        if dropped_samples:
            with self._lock:
                node = self._known(node_id)
                node.dropped_samples = min(node.dropped_samples + dropped_samples, _MAX_COUNT)
                self._dirty.add(node_id)

    def note_event(self, node_id: str, kind: str, message: str) -> None:
        """An event the aggregator itself observed about a node (one of AGGREGATOR_EVENT_KINDS)."""
        now = self._clock()
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                self._own_event(node, kind, message, now)

    def mark_unwritable(self, node_id: str, reason: str) -> bool:
        """The store could not write this node's row; True the first time (until it writes again)."""
        now = self._clock()
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return False
            first = not node.unwritable
            node.unwritable = reason
            self._update_status(node, now)
            return first

    def mark_written(self, node_ids: Iterable[str]) -> list[str]:
        """These nodes' rows were written; returns those that had been unwritable."""
        now = self._clock()
        recovered = []
        with self._lock:
            for node_id in node_ids:
                node = self._nodes.get(node_id)
                if node is not None and node.unwritable:
                    node.unwritable = ""
                    recovered.append(node_id)
                    self._update_status(node, now)
        return recovered

    def refresh_status(self) -> list[str]:
        """Re-evaluate every node against the clock (stale, expired problems)."""
        now = self._clock()
        changed = []
        with self._lock:
            for node in self._nodes.values():
                if self._update_status(node, now):
                    changed.append(node.node_id)
        return changed

    def remove(self, node_id: str, *, delete_stored: Callable[[str], object]) -> NodeState | None:
        """Forget a node (its Kubernetes Node was deleted); returns its last state, None if unknown.

        `delete_stored(node_id)` removes it from the store (e.g. `NodeStore.delete_node`);
        it runs under the registry's lock, so nothing about the node is handed to the
        committer between the two, and when it raises the registry keeps the node.
        Call it with the committer paused (`IngestService.remove_node` does): a batch
        already taken but not yet written would otherwise write the node back.
        Listeners then get a `NodeChange(kind="removed")` with the node's last state.
        """
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return None
            delete_stored(node_id)
            del self._nodes[node_id]
            self._dirty.discard(node_id)
            self._inventory_dirty.discard(node_id)
            self._new_events = [e for e in self._new_events if e.node_id != node_id]
            now = self._clock()
            log.info("node %s removed from the registry", node_id)
            self._emit("removed", node, now)
            return self._state(node, decode=False)

    # ------------------------------------------------------------ persistence

    def take_pending(self) -> PendingWrite:
        """What changed since the last call, to be written in one transaction."""
        with self._lock:
            nodes = tuple(self._nodes[i].copy() for i in sorted(self._dirty) if i in self._nodes)
            inventory_changed = frozenset(i for i in self._inventory_dirty if i in self._nodes)
            events = tuple(self._new_events)
            self._dirty.clear()
            self._inventory_dirty.clear()
            self._new_events = []
            return PendingWrite(nodes, events, inventory_changed)

    def mark_committed(self, pending: PendingWrite) -> dict[str, tuple[str, int]]:
        """Note what is now on disk; returns node id -> (agent instance, seq it may be told)."""
        acks = {}
        with self._lock:
            for rec in pending.nodes:
                node = self._nodes.get(rec.node_id)
                if node is not None and node.agent_instance == rec.agent_instance:
                    node.committed_seq = max(node.committed_seq, rec.seq)
                    acks[rec.node_id] = (rec.agent_instance, node.committed_seq)
        return acks

    def requeue(self, pending: PendingWrite) -> None:
        """A write failed: everything in it is pending again."""
        with self._lock:  # a node removed meanwhile stays removed
            self._dirty.update(rec.node_id for rec in pending.nodes if rec.node_id in self._nodes)
            self._inventory_dirty.update(i for i in pending.inventory_changed if i in self._nodes)
            self._new_events[:0] = [e for e in pending.events if e.node_id in self._nodes]

    def committed_seq(self, node_id: str, agent_instance: str) -> int:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None or node.agent_instance != agent_instance:
                return 0
            return node.committed_seq

    def restore(self, records: Iterable[NodeRecord], events: Iterable[StoredEvent]) -> None:
        """Rebuild from the store after a restart (nothing is dirty afterwards)."""
        with self._lock:
            for rec in records:
                self._nodes[rec.node_id] = _Node(**rec.field_values(), committed_seq=rec.seq)
            # events come oldest first; replaying them rebuilds the recent-events list
            for stored in events:
                node = self._nodes.get(stored.node_id)
                if node is not None:
                    self._remember_event(node, stored.event)
            now = self._clock()
            self._dirty.clear()
            for node in self._nodes.values():
                self._update_status(node, now)

    # ------------------------------------------------------------ internals

    def _known(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            raise UnknownNode(node_id)
        return node

    def _judge_clock(self, node: _Node, timestamp: float, now: float, field_name: str) -> float:
        """The time to use for a reading stamped `timestamp`: itself, or `now` if the agent's clock runs ahead."""
        ahead = timestamp - now
        if ahead > self.clock_tolerance_s:
            if not node.clock_skew_s:
                message = (f"{field_name} is {ahead:.0f} s ahead of the aggregator's clock (tolerance "
                           f"{self.clock_tolerance_s:g} s): readings ahead are taken as their arrival time")
                log.warning("node %s: %s", node.node_id, message)
                self._own_event(node, "clock_skew", message, now)
            node.clock_skew_s = ahead
            return now
        if node.clock_skew_s:
            log.info("node %s: its clock is within %g s of the aggregator's again", node.node_id, self.clock_tolerance_s)
            node.clock_skew_s = 0.0
        return timestamp

    def _own_event(self, node: _Node, kind: str, message: str, now: float) -> None:
        event = HealthEvent(kind=kind, timestamp=now, message=message)
        self._own_seq = max(self._own_seq + 1, int(now * 1000))
        self._remember_event(node, event)
        self._new_events.append(StoredEvent(node.node_id, AGGREGATOR_INSTANCE, self._own_seq, event))
        self._dirty.add(node.node_id)
        self._emit("health", node, now, health=event)

    def _touch(self, node: _Node, seq: int, now: float) -> None:
        node.seq = max(node.seq, seq)
        node.last_seen = now
        self._dirty.add(node.node_id)
        self._update_status(node, now)

    def _remember_event(self, node: _Node, event: HealthEvent) -> None:
        node.health.appendleft(event)
        while len(node.health) > self.max_health_events:
            node.health.pop()

    def _problems(self, node: _Node, now: float) -> tuple[str, ...]:
        figures = node.figures
        labels = gpu_problem_labels(
            figures.gpu_problems if figures else (), figures.timestamp if figures else None, node.health, now, self.health_rule
        )
        return (f"node not stored: {node.unwritable}", *labels) if node.unwritable else labels

    def _compute_status(self, node: _Node, now: float) -> str:
        if now - node.last_seen > self.stale_after_intervals * node.interval_s:
            return "stale"
        return "unhealthy" if self._problems(node, now) else "healthy"

    def _update_status(self, node: _Node, now: float) -> bool:
        status = self._compute_status(node, now)
        if status == node.status:
            return False
        log.info("node %s: %s -> %s", node.node_id, node.status, status)
        node.status = status
        self._dirty.add(node.node_id)
        self._emit("status", node, now)
        return True

    def _emit(self, kind: str, node: _Node, now: float, health: HealthEvent | None = None) -> None:
        if not self._listeners:
            return
        change = NodeChange(kind=kind, node=self._state(node), timestamp=now, health=health)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("node change listener %r failed", listener)

    def _latest(self, node: _Node) -> NodeSample | None:
        if node.latest_decoded is None and node.latest_sample is not None:
            node.latest_decoded = self._decode(node.latest_sample)
        return node.latest_decoded

    def _state(self, node: _Node, decode: bool = True) -> NodeState:
        return NodeState(
            **{name: getattr(node, name) for name in STATE_FIELDS_FROM_NODE},
            latest=self._latest(node) if decode else None,
            health_events=tuple(node.health),
        )
