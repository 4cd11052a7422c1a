"""The aggregator's typed view of a node, shared by its modules.

The registry (telemetry ingest) produces `NodeState` snapshots; onboarding,
the stability checker, the HTTP API and the metrics exposition consume them.
They never see protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

__all__ = ["NODE_CHANGE_KINDS", "NODE_STATUSES", "NodeChange", "NodeState", "RollingFigures"]

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
class NodeState:
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


NODE_CHANGE_KINDS = ("joined", "status", "inventory", "health", "removed")


@dataclass(frozen=True)
class NodeChange:
    """What the registry tells its listeners (enrollment, stability, watchers)."""

    kind: str  # one of NODE_CHANGE_KINDS
    node: NodeState
    timestamp: float
    health: HealthEvent | None = None  # with kind == "health"
