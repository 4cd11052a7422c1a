"""Putting the stability checker together for `aios-aggregator serve` (one call for the wiring).

    stability = build_stability(cluster_id=..., registry=registry, db=db, cluster_store=cluster_store,
                                policy_config=lambda: PolicyConfig.from_env(...))
    stability.start()                                   # schedule + subscribe, notifications
    create_app(..., routers=[stability.router])         # HTTP
    add_stability_service(grpc_server, stability.checker)  # gRPC
    ...
    stability.close()
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.stability.checker import RegistryLike, StabilityChecker, interval_from_env, policy_opener
from aggregator.stability.http_routes import create_stability_router
from aggregator.stability.notify import NotificationDispatcher, dispatcher_from_env
from aggregator.stability.verdicts import VerdictStore

__all__ = ["StabilityParts", "build_stability"]


@dataclass
class StabilityParts:
    checker: StabilityChecker
    dispatcher: NotificationDispatcher | None
    router: APIRouter

    def start(self, scheduler: Any = None) -> None:
        if self.dispatcher is not None:
            self.dispatcher.start()
        self.checker.start(scheduler)

    def close(self) -> None:
        self.checker.close()
        if self.dispatcher is not None:
            self.dispatcher.close()


def build_stability(
    *,
    cluster_id: str,
    registry: RegistryLike,
    db: Database,
    cluster_store: ClusterStore,
    policy_config: Any,  # PolicyConfig, or a callable returning one at each policy load
    env: Mapping[str, str] | None = None,
    core_v1: Any = None,  # kubernetes.client.CoreV1Api for Events; None: no Events
    events_namespace: str = "controllers",
    clock: Callable[[], float] = time.time,
    history_limit: int = 1000,
) -> StabilityParts:
    """Reads `CLUSTER_STABILITY_CHECK_INTERVAL` and `AIOS_STABILITY_WEBHOOK_URL` from `env`."""
    env = os.environ if env is None else env
    checker = StabilityChecker(
        cluster_id=cluster_id,
        registry=registry,
        cluster_store=cluster_store,
        verdicts=VerdictStore(db, history_limit=history_limit),
        open_policy=policy_opener(policy_config),
        clock=clock,
        interval_s=interval_from_env(env),
    )
    dispatcher = dispatcher_from_env(env, cluster_id=cluster_id, core_v1=core_v1, namespace=events_namespace)
    if dispatcher is not None:
        checker.on_transition(dispatcher.submit)
    return StabilityParts(checker=checker, dispatcher=dispatcher, router=create_stability_router(checker))
