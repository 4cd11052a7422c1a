"""Onboarding inside `aios-aggregator serve`: the ClusterDocuments gRPC service and enrollment.

    onboarding = build_onboarding(cluster_store, registry=..., cluster_id=..., tokens=...)
    build_grpc_server(..., add_services=[onboarding.add_services])   # before the server starts
    onboarding.start()                                               # the enrollment worker
    ...
    onboarding.close()

Built before the gRPC server (so before any agent's hello): with a cluster id
configured, enrollment follows the registry from then on, queues the nodes
restored from the database that the stored document lacks, and catches up
whenever the document is stored over gRPC (the nodes that said hello before
the operator onboarded the cluster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.cluster.store import ClusterStore
from aggregator.onboarding.cluster_service import add_cluster_documents_servicer
from aggregator.onboarding.enrollment import Enrollment
from aggregator.onboarding.parser_client import ParserClient

__all__ = ["OnboardingParts", "build_onboarding"]

log = logging.getLogger(__name__)


@dataclass
class OnboardingParts:
    store: ClusterStore
    enrollment: Enrollment | None
    cluster_id: str
    tokens: Sequence[str]
    registry: Any
    on_stored: Callable[[str], None] | None = None

    def add_services(self, server: Any) -> None:
        """Add the ClusterDocuments service to a gRPC server that is not started yet."""
        add_cluster_documents_servicer(
            server, self.store, tokens=lambda: self.tokens, cluster_id=self.cluster_id, on_stored=self._caught_up
        )

    def start(self) -> None:
        if self.enrollment is not None:
            self.enrollment.start()

    def close(self) -> None:
        if self.enrollment is not None:
            self.enrollment.close()

    def _caught_up(self, stored_id: str) -> None:
        if self.on_stored is not None:
            self.on_stored(stored_id)
        if self.enrollment is not None and stored_id == self.cluster_id:
            self.enrollment.enroll_missing(self.registry.snapshot())


def build_onboarding(
    store: ClusterStore,
    *,
    registry: Any,
    cluster_id: str,
    tokens: Sequence[str],
    governance: Any = None,
    api_url: str | None = None,
    clock: Callable[[], float] = time.time,
    on_stored: Callable[[str], None] | None = None,
) -> OnboardingParts:
    """`on_stored(cluster_id)`: called after a document was stored over gRPC (e.g. to seed the pre-check map)."""
    enrollment = None
    if cluster_id:
        parser = ParserClient(api_url) if api_url else None
        enrollment = Enrollment(store, cluster_id, governance, parser, clock)
        enrollment.subscribe_to(registry)  # before the snapshot: no hello falls between
        enrollment.enroll_missing(registry.snapshot())
        log.info("enrollment of cluster %s: on (%s)", cluster_id,
                 f"parser {api_url}" if parser else "no parser URL: the stored document only")
    else:
        log.warning("no cluster id configured: nodes that join later are not enrolled")
    return OnboardingParts(store, enrollment, cluster_id, tokens, registry, on_stored)
