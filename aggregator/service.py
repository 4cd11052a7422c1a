"""Wiring of `aios-aggregator serve`: database, registry, servers, background tasks.

`Aggregator` owns the pieces and their order of start and stop; other
components (onboarding, stability, metrics, the HTTP app) are added here by
whoever wires them, taking `aggregator.registry` and `aggregator.db` from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aggregator.db import Database
from aggregator.grpc_server import GrpcServer, TlsFiles, build_grpc_server
from aggregator.ingest import IngestService
from aggregator.node_store import NodeStore
from aggregator.onboarding.wiring import OnboardingParts, add_onboarding
from aggregator.query_service import QueryService
from aggregator.registry import NodeRegistry
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import NodeSample

__all__ = ["ServeConfig", "Aggregator", "serve", "decode_sample"]

log = logging.getLogger(__name__)


def decode_sample(data: bytes) -> NodeSample:
    return convert.sample_from_pb(pb.NodeSample.FromString(data))


@dataclass
class ServeConfig:
    db_path: Path
    tokens: tuple[str, ...]
    grpc_port: int = 50051
    http_port: int | None = 8080
    host: str = "0.0.0.0"
    cluster_id: str = ""
    tls: TlsFiles | None = None
    stale_after_intervals: float = 3.0
    problem_window_s: float = 600.0
    commit_interval_s: float = 0.1
    status_every_s: float = 1.0
    max_message_bytes: int = 256 * 1024
    agent_interval_s: float | None = None  # instruct agents to use this interval
    ready_file: Path | None = None  # written with the bound ports once serving
    api_url: str | None = None  # the network's parser: nodes joining later are posted to /api/addNode
    extra: dict = field(default_factory=dict)


class Aggregator:
    def __init__(self, config: ServeConfig, *, clock: Callable[[], float] = time.time) -> None:
        if not config.tokens:
            raise ValueError("no token configured: set AIOS_TOKEN or AIOS_TOKEN_FILE")
        self.config = config
        self.clock = clock
        self.db: Database | None = None
        self.registry: NodeRegistry | None = None
        self.ingest: IngestService | None = None
        self.grpc: GrpcServer | None = None
        self.onboarding: OnboardingParts | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        cfg = self.config
        self.db = Database(cfg.db_path)
        store = NodeStore(self.db)
        self.registry = NodeRegistry(
            clock=self.clock,
            decode_sample=decode_sample,
            stale_after_intervals=cfg.stale_after_intervals,
            problem_window_s=cfg.problem_window_s,
        )
        records, events = store.load()
        self.registry.restore(records, events)
        log.info("registry restored: %d node(s), %d health event(s) from %s", len(records), len(events), cfg.db_path)
        self.ingest = IngestService(
            self.registry,
            store,
            max_message_bytes=cfg.max_message_bytes,
            commit_interval_s=cfg.commit_interval_s,
            agent_interval_s=cfg.agent_interval_s,
        )
        query = QueryService(self.registry, cluster_id=cfg.cluster_id)
        self.grpc = await build_grpc_server(
            self.ingest, query, tokens=cfg.tokens, host=cfg.host, port=cfg.grpc_port, tls=cfg.tls,
            add_services=[self._add_onboarding],
        )
        self._tasks = [
            asyncio.ensure_future(self.ingest.run_committer()),
            asyncio.ensure_future(self.ingest.run_status_ticker(cfg.status_every_s)),
            asyncio.ensure_future(self.ingest.run_event_pruner()),
        ]
        # HTTP: the FastAPI app (aggregator/http_app.py, policies branch) is
        # started here on cfg.http_port by the lead's wiring, in this loop.
        log.info("gRPC listening on %s:%d", cfg.host, self.grpc.port)
        if cfg.ready_file is not None:
            _write_atomically(cfg.ready_file, json.dumps({"grpc_port": self.grpc.port, "pid": os.getpid()}))

    def _add_onboarding(self, server) -> None:
        cfg = self.config
        # governance=None: the add_node/remove_node pre-checks join once the
        # policies' Governance is wired into this service
        self.onboarding = add_onboarding(
            server, db=self.db, registry=self.registry, cluster_id=cfg.cluster_id, tokens=cfg.tokens,
            governance=None, api_url=cfg.api_url, clock=self.clock,
        )

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace_s=1.0)
        if self.onboarding is not None:
            self.onboarding.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ingest is not None:
            await self.ingest.commit_once()  # what was received is kept, though not acked
        if self.db is not None:
            self.db.close()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def serve(config: ServeConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop cleanly."""
    aggregator = Aggregator(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await aggregator.start()
    try:
        await stopping.wait()
        log.info("stopping")
    finally:
        await aggregator.stop()
