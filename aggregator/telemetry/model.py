"""The aggregator's typed view of a node, shared by its modules.

A node's fields are defined once, in `NodeRecord` (what is stored) and
`NodeMarks` (what the aggregator itself notes about a node, in memory only):
the registry holds one of each per node (a subclass of both adding its own
bookkeeping), the store writes and reads exactly the record's fields, and
`NodeState` (the read-only view onboarding, the stability checker, the HTTP
API and the metrics consume) is filled from them by name. None of them sees
protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

__all__ = [
    "NODE_CHANGE_KINDS",
    "NODE_STATUSES",
    "RECORD_FIELDS",
    "STATE_FIELDS_FROM_NODE",
    "NodeChange",
    "NodeMarks",
    "NodeRecord",
    "NodeState",
    "PendingWrite",
    "RollingFigures",
    "SampleFigures",
    "StoredEvent",
]

# healthy: reporting, no open GPU problem; unhealthy: reporting with a health
# problem (lost GPU, fatal XID, ...); stale: missed too many intervals.
NODE_STATUSES = ("healthy", "unhealthy", "stale")


@dataclass(frozen=True)
class RollingFigures:
    """Exponentially weighted 1/5/15-minute averages, like the load average."""

    cpu_percent: tuple[float | None, float | None, float | None] = (None, None, None)
    gpu_utilization_pct: tuple[float | None, float | None, float | None] = (None, None, None)
    memory_used_pct: tuple[float | None, float | None, float | None] = (None, None, None)


@dataclass(frozen=True)
class SampleFigures:
    """What the registry reads out of a sample (extracted at the edge)."""

    timestamp: float
    cpu_percent: float | None = None
    gpu_utilization_pct: float | None = None  # mean over the GPUs that report it
    memory_used_pct: float | None = None
    gpu_problems: tuple[str, ...] = ()  # labels of the sample's GPU problems (proto/health/gpu_rule.py), e.g. ("gpu 1 lost",)


@dataclass
class NodeRecord:
    """A node's fields: everything needed to rebuild the registry after a restart.

    Mutable because the registry updates its nodes in place on every message
    (under its lock); what the store is handed is a `copy()` nobody changes.
    """

    node_id: str
    inventory: NodeInventory
    first_seen: float
    last_seen: float
    status: str = "healthy"  # one of NODE_STATUSES
    agent_version: str = ""
    cluster_id: str = ""
    interval_s: float = 10.0
    agent_instance: str = ""
    seq: int = 0  # highest sequence number applied from agent_instance; once written, what it may be told
    latest_sample: bytes | None = None  # protobuf wire form, decoded only when read
    figures: SampleFigures | None = None  # from the latest sample
    rolling: RollingFigures = field(default_factory=RollingFigures)
    samples_received: int = 0
    dropped_samples: int = 0

    def copy(self) -> NodeRecord:
        """These fields alone, detached (a subclass's extra fields stay behind)."""
        return NodeRecord(**self.field_values())

    def field_values(self) -> dict:
        return {name: getattr(self, name) for name in RECORD_FIELDS}


RECORD_FIELDS = tuple(f.name for f in fields(NodeRecord))


@dataclass
class NodeMarks:
    """What the aggregator notes about a node itself (not stored: it is noted again after a restart)."""

    clock_skew_s: float = 0.0  # how far the agent's clock is ahead, when beyond the tolerance; else 0
    unwritable: str = ""  # why the store could not write this node's row at the last commit; "" when it could


@dataclass(frozen=True)
class NodeState:
    """A node as readers see it: the record's public fields and marks, the decoded latest sample, recent events.

    Every field but `latest` and `health_events` is a `NodeRecord` or
    `NodeMarks` field of the same name (the registry copies them by name; a
    test keeps it so).
    """

    node_id: str
    status: str  # one of NODE_STATUSES
    inventory: NodeInventory
    latest: NodeSample | None
    last_seen: float  # unix seconds of the last message from the agent
    first_seen: float
    agent_version: str = ""
    cluster_id: str = ""
    interval_s: float = 10.0
    health_events: tuple[HealthEvent, ...] = ()  # recent first
    rolling: RollingFigures = field(default_factory=RollingFigures)
    samples_received: int = 0
    dropped_samples: int = 0
    clock_skew_s: float = 0.0
    unwritable: str = ""


# the NodeState fields read straight off the registry's node (a NodeRecord and NodeMarks)
STATE_FIELDS_FROM_NODE = tuple(f.name for f in fields(NodeState) if f.name not in ("latest", "health_events"))


@dataclass(frozen=True)
class StoredEvent:
    node_id: str
    agent_instance: str
    seq: int
    event: HealthEvent


@dataclass(frozen=True)
class PendingWrite:
    """What changed since the last commit: one transaction's worth."""

    nodes: tuple[NodeRecord, ...]
    events: tuple[StoredEvent, ...]
    inventory_changed: frozenset[str] = frozenset()  # node ids whose inventory must be (re)written

    def __bool__(self) -> bool:
        return bool(self.nodes or self.events)


NODE_CHANGE_KINDS = ("joined", "status", "inventory", "health", "removed")


@dataclass(frozen=True)
class NodeChange:
    """What the registry tells its listeners (enrollment, stability, watchers)."""

    kind: str  # one of NODE_CHANGE_KINDS
    node: NodeState
    timestamp: float
    health: HealthEvent | None = None  # with kind == "health"
