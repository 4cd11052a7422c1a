"""Putting the quarantine together for `aios-aggregator serve` (one call for the wiring).

    parts = build_quarantine(env=..., db=..., registry=..., governance=..., ...)
    parts.controller.start()                         # its thread; evaluates on node changes and verdicts
    create_app(..., routers=[parts.router])          # GET /quarantine
    QueryService(..., quarantine=parts.summary_pb)   # NodeSummary.quarantine in the gRPC node query
    checker.add_node_field("quarantine", parts.nodes_field)   # /nodes_status and the policy's nodes_data
    ...
    parts.controller.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter

from aggregator.db import Database
from aggregator.quarantine.config import QuarantineConfig
from aggregator.quarantine.controller import QuarantineController, QuarantineParts
from aggregator.quarantine.http_routes import create_quarantine_router
from aggregator.quarantine.kube import NodeQuarantineApi
from aggregator.quarantine.store import QuarantineRecord, QuarantineStore
from proto.health.gpu_rule import DEFAULT_RULE, HealthRule
from proto.telemetry.v1 import telemetry_pb2 as pb

__all__ = ["QuarantineWiring", "build_quarantine", "quarantine_rule", "record_pb"]


def record_pb(record: QuarantineRecord) -> pb.NodeQuarantine:
    return pb.NodeQuarantine(state=record.state, reason=record.reason, detail=record.detail[:1024], since=record.since,
                             mode=record.mode, gpus=list(record.gpus))


def quarantine_rule(env: Mapping[str, str]) -> HealthRule:
    """The shared rule's settings for quarantine: a GPU that cannot be read (a hung call) counts;
    `AIOS_GPU_EVENT_WINDOW_S` (the rule's 600 s) is how long an XID counts, as on the agents."""
    raw = str(env.get("AIOS_GPU_EVENT_WINDOW_S", "") or "").strip()
    window = DEFAULT_RULE.event_window_s
    if raw:
        try:
            window = float(raw)
        except ValueError as exc:
            raise ValueError(f"AIOS_GPU_EVENT_WINDOW_S={raw!r}: not a number of seconds") from exc
        if not 0 < window <= 7 * 86400:
            raise ValueError(f"AIOS_GPU_EVENT_WINDOW_S={raw!r}: must be > 0 and at most a week")
    return replace(DEFAULT_RULE, unresponsive=True, event_window_s=window)


@dataclass
class QuarantineWiring:
    controller: QuarantineController
    store: QuarantineStore
    router: APIRouter

    def summary_pb(self, node_id: str) -> pb.NodeQuarantine | None:
        record = self.controller.view().get(node_id)
        return None if record is None else record_pb(record)

    def nodes_field(self) -> dict[str, dict]:
        return {node_id: record.to_json() for node_id, record in self.controller.view().items()}


def build_quarantine(
    *,
    env: Mapping[str, str],
    db: Database,
    registry: Any,
    precheck: Callable[[str, dict], Any] | None,
    cluster_data: Callable[[], dict],
    kube_nodes: Callable[[], list] | None,
    note_written: Callable[[Any], None] | None,
    core_v1: Any,
    namespace: str,
    acknowledgements: Callable[[], Mapping[str, list]],
    latest_verdict: Callable[[], Any],
    clock: Callable[[], float] = time.time,
) -> QuarantineWiring:
    """Reads `AIOS_QUARANTINE*` and `AIOS_GPU_EVENT_WINDOW_S` from `env` (a bad value raises, naming it)."""
    config = QuarantineConfig.from_env(env)
    store = QuarantineStore(db)
    kube_api = NodeQuarantineApi(core_v1, namespace=namespace, clock=clock) if core_v1 is not None else None
    parts = QuarantineParts(
        registry=registry, store=store, rule=quarantine_rule(env), precheck=precheck, cluster_data=cluster_data,
        kube_nodes=kube_nodes, note_written=note_written, kube_api=kube_api, acknowledgements=acknowledgements,
        latest_verdict=latest_verdict,
    )
    controller = QuarantineController(config, parts, clock=clock)
    return QuarantineWiring(controller=controller, store=store, router=create_quarantine_router(controller, store))
