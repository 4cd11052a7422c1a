"""TelemetryQuery: the registry's picture of the cluster over gRPC.

The pure `*_pb` functions turn registry values into wire messages; the
servicer only looks things up and streams changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import grpc

from aggregator.telemetry.gpu_uses import GpuUse, uses_of_gpu, uses_of_pod
from aggregator.telemetry.model import NodeChange, NodeState, RollingFigures
from aggregator.telemetry.registry import NodeOverview, NodeRegistry
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

__all__ = [
    "STATUS_TO_PB",
    "QueryService",
    "cluster_summary_pb",
    "detail_pb",
    "gpu_uses_pb",
    "rolling_pb",
    "summary_pb",
]

log = logging.getLogger(__name__)

STATUS_TO_PB = {
    "healthy": pb.NODE_STATUS_HEALTHY,
    "unhealthy": pb.NODE_STATUS_UNHEALTHY,
    "stale": pb.NODE_STATUS_STALE,
}
_CHANGE_TO_PB = {
    "joined": pb.NodeChange.KIND_JOINED,
    "status": pb.NodeChange.KIND_STATUS,
    "inventory": pb.NodeChange.KIND_INVENTORY,
    "health": pb.NodeChange.KIND_HEALTH,
    "removed": pb.NodeChange.KIND_REMOVED,
}
DEFAULT_HEALTH_EVENTS = 20


def _set_optional(msg, name: str, value) -> None:
    if value is not None:
        setattr(msg, name, value)


def summary_pb(view: NodeOverview) -> pb.NodeSummary:
    state = view.state
    inv = state.inventory
    msg = pb.NodeSummary(
        node_id=state.node_id,
        node_name=inv.node_name,
        status=STATUS_TO_PB.get(state.status, pb.NODE_STATUS_UNSPECIFIED),
        last_seen=state.last_seen,
        gpu_count=len(inv.gpus),
        gpu_memory_mb=sum(g.memory_mb for g in inv.gpus),
        agent_version=state.agent_version,
        open_health_events=len(view.problems),
    )
    if view.figures is not None:
        _set_optional(msg, "cpu_percent", view.figures.cpu_percent)
        _set_optional(msg, "gpu_utilization_pct", view.figures.gpu_utilization_pct)
    return msg


def rolling_pb(rolling: RollingFigures) -> pb.RollingFigures:
    msg = pb.RollingFigures()
    for name, triple in (
        ("cpu_percent", rolling.cpu_percent),
        ("gpu_utilization_pct", rolling.gpu_utilization_pct),
        ("memory_used_pct", rolling.memory_used_pct),
    ):
        for suffix, value in zip(("1m", "5m", "15m"), triple):
            _set_optional(msg, f"{name}_{suffix}", value)
    return msg


def detail_pb(view: NodeOverview, state: NodeState, max_events: int) -> pb.NodeDetail:
    msg = pb.NodeDetail(
        summary=summary_pb(view),
        inventory=convert.inventory_to_pb(state.inventory),
        rolling=rolling_pb(state.rolling),
        health_events=[convert.health_to_pb(e) for e in state.health_events[:max_events]],
    )
    if state.latest is not None:
        msg.latest_sample.CopyFrom(convert.sample_to_pb(state.latest))
    return msg


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def cluster_summary_pb(cluster_id: str, views: list[NodeOverview], samples: int) -> pb.ClusterSummary:
    """Totals over every node; averages over the nodes that are reporting (not stale)."""
    statuses = [v.state.status for v in views]
    live = [v.figures for v in views if v.state.status != "stale" and v.figures is not None]
    hosts = [v.state.inventory.host for v in views if v.state.inventory.host is not None]
    msg = pb.ClusterSummary(
        cluster_id=cluster_id,
        nodes_total=len(views),
        nodes_healthy=statuses.count("healthy"),
        nodes_unhealthy=statuses.count("unhealthy"),
        nodes_stale=statuses.count("stale"),
        gpus_total=sum(len(v.state.inventory.gpus) for v in views),
        gpu_memory_total_mb=sum(g.memory_mb for v in views for g in v.state.inventory.gpus),
        vcpus_total=sum(h.cpu_logical for h in hosts),
        memory_total_mb=sum(h.memory_total_mb for h in hosts),
        samples_received=samples,
    )
    _set_optional(msg, "avg_cpu_percent", _mean(f.cpu_percent for f in live))
    _set_optional(msg, "avg_gpu_utilization_pct", _mean(f.gpu_utilization_pct for f in live))
    _set_optional(msg, "avg_memory_used_pct", _mean(f.memory_used_pct for f in live))
    return msg


def gpu_uses_pb(uses: list[GpuUse]) -> pb.GpuUsesResponse:
    msg = pb.GpuUsesResponse()
    for use in uses:
        item = msg.uses.add(
            node_id=use.node_id,
            gpu_index=use.gpu_index,
            gpu_uuid=use.gpu_uuid,
            mig_uuid=use.mig_uuid,
            namespace=use.namespace,
            pod=use.pod,
            container=use.container,
            allocated=use.allocated,
            pids=use.pids,
            resource=use.resource,
            claim=use.claim,
            pod_uid=use.pod_uid,
        )
        _set_optional(item, "used_memory_bytes", use.used_memory_bytes)
    return msg


class QueryService(pb_grpc.TelemetryQueryServicer):
    def __init__(
        self,
        registry: NodeRegistry,
        *,
        cluster_id: str = "",
        quarantine: Callable[[str], pb.NodeQuarantine | None] | None = None,
    ) -> None:
        """`quarantine(node_id)`: what the quarantine says about a node (aggregator/quarantine/), or None."""
        self.registry = registry
        self.cluster_id = cluster_id
        self._quarantine = quarantine

    def _summary(self, view: NodeOverview) -> pb.NodeSummary:
        msg = summary_pb(view)
        if self._quarantine is not None:
            found = self._quarantine(view.state.node_id)
            if found is not None:
                msg.quarantine.CopyFrom(found)
        return msg

    async def ListNodes(self, request, context):
        return pb.ListNodesResponse(nodes=[self._summary(v) for v in self.registry.overview()])

    async def GetNode(self, request, context):
        node_id = request.node_id
        view = self.registry.overview_of(node_id)
        state = self.registry.get(node_id)
        if view is None or state is None:
            # operators know nodes by name; accept that too
            for candidate in self.registry.overview():
                if candidate.state.inventory.node_name == node_id:
                    view, state = candidate, self.registry.get(candidate.state.node_id)
                    break
        if view is not None and state is not None:
            detail = detail_pb(view, state, request.max_health_events or DEFAULT_HEALTH_EVENTS)
            detail.summary.CopyFrom(self._summary(view))
            return detail
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no node with id or name {node_id!r}")

    async def GetClusterSummary(self, request, context):
        views = self.registry.overview()
        return cluster_summary_pb(self.cluster_id, views, self.registry.total_samples())

    async def GetPodGpus(self, request, context):
        """Which GPUs pod `namespace/pod` uses (any namespace when none is given)."""
        if not request.pod:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "pod: empty (namespace is optional)")
        return gpu_uses_pb(uses_of_pod(self.registry.snapshot(), request.namespace, request.pod))

    async def GetGpuPods(self, request, context):
        """Which pods use a GPU, by GPU or MIG UUID, or by node (id or name) and GPU index."""
        if request.gpu_uuid:
            uses = uses_of_gpu(self.registry.snapshot(), gpu_uuid=request.gpu_uuid)
            what = f"GPU {request.gpu_uuid!r}"
        elif request.node_id and request.HasField("gpu_index"):
            uses = uses_of_gpu(self.registry.snapshot(), node=request.node_id, gpu_index=request.gpu_index)
            what = f"GPU {request.gpu_index} on node {request.node_id!r}"
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give gpu_uuid, or node_id and gpu_index")
        if uses is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no {what} in the cluster")
        return gpu_uses_pb(uses or [])  # (abort raised for None)

    async def WatchNodes(self, request, context):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[NodeChange] = asyncio.Queue(maxsize=10_000)

        def on_change(change: NodeChange) -> None:
            loop.call_soon_threadsafe(_offer, queue, change)

        unsubscribe = self.registry.subscribe(on_change)
        try:
            while True:
                change = await queue.get()
                view = self.registry.overview_of(change.node.node_id)
                if view is None:
                    continue
                msg = pb.NodeChange(
                    kind=_CHANGE_TO_PB[change.kind],
                    node=self._summary(view),
                    timestamp=change.timestamp,
                )
                msg.node.status = STATUS_TO_PB.get(change.node.status, pb.NODE_STATUS_UNSPECIFIED)
                if change.health is not None:
                    msg.health.CopyFrom(convert.health_to_pb(change.health))
                await context.write(msg)
        finally:
            unsubscribe()


def _offer(queue: asyncio.Queue, change: NodeChange) -> None:
    try:
        queue.put_nowait(change)
    except asyncio.QueueFull:
        log.warning("a WatchNodes client is too slow; dropped a change for %s", change.node.node_id)
