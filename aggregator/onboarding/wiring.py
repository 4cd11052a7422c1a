"""Onboarding inside `aios-aggregator serve`: the ClusterDocuments gRPC service and enrollment.

`add_onboarding(server, ...)` is called while the gRPC server is built
(before it starts). With a cluster id configured, enrollment follows the
registry from then on, and catches up whenever the document is stored (the
nodes that said hello before the operator onboarded the cluster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.onboarding.cluster_service import add_cluster_documents_servicer
from aggregator.onboarding.enrollment import Enrollment
from aggregator.onboarding.parser_client import ParserClient

__all__ = ["OnboardingParts", "add_onboarding"]

log = logging.getLogger(__name__)


@dataclass
class OnboardingParts:
    store: ClusterStore
    enrollment: Enrollment | None

    def close(self) -> None:
        if self.enrollment is not None:
            self.enrollment.close()


def add_onboarding(
    server: Any,
    *,
    db: Database,
    registry: Any,
    cluster_id: str,
    tokens: Sequence[str],
    governance: Any = None,
    api_url: str | None = None,
    clock: Callable[[], float] = time.time,
    on_stored: Callable[[str], None] | None = None,
) -> OnboardingParts:
    """`on_stored(cluster_id)`: called after a document was stored over gRPC (e.g. to seed the pre-check map)."""
    store = ClusterStore(db, clock)
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

    def caught_up(stored_id: str) -> None:
        if on_stored is not None:
            on_stored(stored_id)
        if enrollment is not None and stored_id == cluster_id:
            enrollment.enroll_missing(registry.snapshot())

    add_cluster_documents_servicer(server, store, tokens=lambda: tokens, cluster_id=cluster_id, on_stored=caught_up)
    return OnboardingParts(store, enrollment)
