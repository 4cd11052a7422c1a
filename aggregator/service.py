"""Wiring of `aios-aggregator serve`: the whole aggregator in one process and one asyncio loop.

`Aggregator` owns the pieces and their order of start and stop:
the SQLite database, the node registry and its store, gRPC (ingest, queries,
cluster documents, stability), the HTTP API (pre-check map, cluster data,
stability and the nodes service, enrollment records, `/addons`, `/metrics`, `/healthz`),
the stability checker's schedule, and, with a Kubernetes API configured, the
Node watch (a deleted Node leaves the registry, the store and the stored
cluster document) and the stability Events; the quarantine
(aggregator/quarantine/, `AIOS_QUARANTINE`, default dry-run) and the
operators' acknowledgements of GPU problems (recorded, sent to the agents).

Policies run through `open_policy` with a `PolicyConfig` read at each load
from the environment and the stored cluster document's `config`; with
`AIOS_POLICY_SIDECAR_URL` set they run in the pod's policy-runner container.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from aggregator.addons.http_routes import addons_router_for
from aggregator.auth import AccessTokens
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.db import Database
from aggregator.governance.failure_count import PolicyErrorCounter
from aggregator.governance.prechecks import Governance, GovernanceError
from aggregator.kube_client import KubeUnavailable, load_kube_client, pod_namespace
from aggregator.onboarding.http_routes import enrollment_router
from aggregator.onboarding.wiring import OnboardingParts, build_onboarding
from aggregator.policies import PolicyConfig, open_policy
from aggregator.quarantine.metrics import QuarantineCollector
from aggregator.quarantine.wiring import QuarantineWiring, build_quarantine
from aggregator.rpc.agent_auth import AgentAuthConfigError, KubernetesAgentAuth, ServiceAccountRef
from aggregator.rpc.auth import INGEST_METHOD
from aggregator.rpc.server import GrpcServer, TlsFiles, build_grpc_server
from aggregator.stability.acknowledgements import AcknowledgementBook, acknowledgements_from
from aggregator.stability.grpc_service import add_stability_service
from aggregator.stability.wiring import StabilityParts, build_stability
from aggregator.telemetry.ingest import IngestService
from aggregator.telemetry.metrics import AggregatorMetricsProviders, build_aggregator_registry, metrics_router
from aggregator.telemetry.node_watch import KubeNode, NodeWatcher, registry_matches
from aggregator.telemetry.query_service import QueryService
from aggregator.telemetry.registry import NodeRegistry
from aggregator.telemetry.store import NodeStore
from aggregator.token_secret import TokenSecret, ensure_token_secret
from aggregator.web.app import create_app
from aggregator.web.healthz import HealthChecks, HealthListener, healthz_router
from aggregator.web.lanes import WorkLane
from aggregator.web.serving import ThreadedHttpServer, start_http_in_thread
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import NodeSample

__all__ = ["Aggregator", "NoToken", "ServeConfig", "decode_sample", "serve"]

log = logging.getLogger(__name__)


class NoToken(Exception):
    """No token configured and none to be had from the cluster: nothing is served unauthenticated."""


def decode_sample(data: bytes) -> NodeSample:
    return convert.sample_from_pb(pb.NodeSample.FromString(data))


@dataclass
class ServeConfig:
    db_path: Path
    tokens: tuple[str, ...]  # write tokens (AIOS_TOKEN / AIOS_TOKEN_FILE); empty: `token_secret`'s, at start
    read_tokens: tuple[str, ...] = ()  # read-only tokens (AIOS_READ_TOKEN / AIOS_READ_TOKEN_FILE)
    token_secret: str | None = None  # the Secret holding both, read or created at start (aggregator.token_secret)
    # how agents authenticate: "kubernetes" (ServiceAccount token + TokenReview, bound to the node),
    # "token" (the shared token), "auto": kubernetes when a Kubernetes API is configured
    agent_auth: str = "auto"
    agent_service_account: str = "aios-agent"  # NAME or NAMESPACE:NAME (default namespace: the pod's)
    grpc_port: int = 50051
    http_port: int | None = 8080
    health_port: int | None = None  # GET /healthz alone, on a thread and port of its own (the probes' port)
    host: str = "0.0.0.0"
    cluster_id: str = ""
    tls: TlsFiles | None = None
    stale_after_intervals: float = 3.0
    problem_window_s: float = 600.0
    commit_interval_s: float = 0.1
    status_every_s: float = 1.0
    max_message_bytes: int = 256 * 1024
    max_nodes: int = 10_000  # hellos for more node ids are refused (RESOURCE_EXHAUSTED)
    agent_interval_s: float | None = None  # instruct agents to use this interval
    ready_file: Path | None = None  # written with the bound ports once serving
    api_url: str | None = None  # the network's parser: nodes joining later are posted to /api/addNode
    kubeconfig: str | None = None  # None: KUBECONFIG, then in-cluster; neither: no Kubernetes features
    kubernetes: bool = True  # False: no Kubernetes client at all (no Node watch, no Events)
    per_node_metrics: bool = False  # /metrics also carries every node's latest series
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)  # POLICY_*, CLUSTER_STABILITY_*, ...


class Aggregator:
    def __init__(self, config: ServeConfig, *, clock: Callable[[], float] = time.time) -> None:
        if not config.tokens and not config.token_secret:
            raise ValueError("no token configured: set AIOS_TOKEN or AIOS_TOKEN_FILE")
        self.config = replace(config, env=_with_absolute_cache_dir(config.env))
        self.clock = clock
        self.tokens: tuple[str, ...] = tuple(config.tokens)
        self.read_tokens: tuple[str, ...] = tuple(config.read_tokens)
        self.token_secret: TokenSecret | None = None
        self.db: Database | None = None
        self.registry: NodeRegistry | None = None
        self.ingest: IngestService | None = None
        self.grpc: GrpcServer | None = None
        self.http: ThreadedHttpServer | None = None
        self.health: HealthChecks | None = None
        self.health_listener: HealthListener | None = None
        self._http_port: int | None = None  # set by the HTTP thread once it listens
        self.cluster_store: ClusterStore | None = None
        self.governance: Governance | None = None
        self.stability: StabilityParts | None = None
        self.onboarding: OnboardingParts | None = None
        self.node_watcher: NodeWatcher | None = None
        self.quarantine: QuarantineWiring | None = None
        self.acknowledgements: AcknowledgementBook | None = None
        self.policy_errors = PolicyErrorCounter()
        self.work_lane = WorkLane("http")  # policy-bound and large HTTP work, off the loop and the request pool
        self._kube_client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ start

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self.policy_config()  # a bad POLICY_*/AIOS_POLICY_* value stops the start here, saying which
        db = self.db = Database(cfg.db_path)
        store = NodeStore(db)
        registry = self.registry = NodeRegistry(
            clock=self.clock,
            decode_sample=decode_sample,
            stale_after_intervals=cfg.stale_after_intervals,
            problem_window_s=cfg.problem_window_s,
        )
        records, events = store.load()
        registry.restore(records, events)
        log.info("registry restored: %d node(s), %d health event(s) from %s", len(records), len(events), cfg.db_path)
        core_v1 = self._core_v1()
        if not self.tokens:
            await self._tokens_from_secret(core_v1)
        agent_auth = self._agent_auth()
        ingest = self.ingest = IngestService(
            registry,
            store,
            max_message_bytes=cfg.max_message_bytes,
            commit_interval_s=cfg.commit_interval_s,
            agent_interval_s=cfg.agent_interval_s,
            max_nodes=cfg.max_nodes,
            agent_auth=agent_auth,
        )
        cluster_store = self.cluster_store = ClusterStore(db, clock=self.clock)
        governance = self.governance = Governance(db, self._open_governance_policy, clock=self.clock)
        self._seed_policy_map(cfg.cluster_id)
        # one ClusterStore for everything that reads or writes cluster documents
        stability = self.stability = build_stability(
            cluster_id=cfg.cluster_id,
            registry=registry,
            db=db,
            cluster_store=cluster_store,
            policy_config=self.policy_config,
            env=cfg.env,
            core_v1=core_v1,
            events_namespace=pod_namespace(cfg.env),
            clock=self.clock,
        )
        stability.checker.on_verdict(self.policy_errors.count_verdict)
        onboarding = self.onboarding = build_onboarding(
            cluster_store, registry=registry, cluster_id=cfg.cluster_id, tokens=self.tokens,
            governance=governance, api_url=cfg.api_url, clock=self.clock, on_stored=self._seed_policy_map,
        )
        quarantine = self.quarantine = self._add_quarantine(core_v1, db, registry, stability, governance, self.ingest)
        query = QueryService(registry, cluster_id=cfg.cluster_id, quarantine=quarantine.summary_pb)

        def add_stability_servicer(server: Any) -> None:
            add_stability_service(server, stability.checker)

        self.grpc = await build_grpc_server(
            self.ingest, query, tokens=self.access_tokens, host=cfg.host, port=cfg.grpc_port, tls=cfg.tls,
            add_services=[onboarding.add_services, add_stability_servicer],
            self_authenticating=frozenset({INGEST_METHOD}) if agent_auth is not None else frozenset(),
        )
        log.info("gRPC listening on %s:%d", cfg.host, self.grpc.port)
        self._tasks = [
            asyncio.ensure_future(self.ingest.run_committer()),
            asyncio.ensure_future(self.ingest.run_status_ticker(cfg.status_every_s)),
            asyncio.ensure_future(self.ingest.run_event_pruner()),
        ]
        stability.start()
        onboarding.start()
        health = self.health = HealthChecks({"grpc": self._grpc_up, "db": self._db_up, "http": self._http_up})
        http_port = health_port = None
        if cfg.http_port is not None:
            # its own thread and event loop: HTTP load never delays gRPC (ingest acks, gRPC health)
            app = self._http_app(registry, stability, governance, cluster_store, quarantine, ingest, health)
            self.http = await asyncio.to_thread(
                functools.partial(start_http_in_thread, app, cfg.host, cfg.http_port, on_started=self._http_listening)
            )
            http_port = self.http.port
            log.info("HTTP API listening on %s:%d", cfg.host, http_port)
        if cfg.health_port is not None:
            self.health_listener = HealthListener(self.health, cfg.host, cfg.health_port)
            health_port = await asyncio.to_thread(self.health_listener.start)
            log.info("health listening on %s:%d (GET /healthz)", cfg.host, health_port)
        if core_v1 is not None:
            self.node_watcher = NodeWatcher(core_v1, on_deleted=self._node_deleted, on_listed=self._nodes_listed).start()
            log.info("watching Kubernetes Nodes: a deleted Node leaves the registry and the cluster document")
        quarantine.controller.start()
        if cfg.ready_file is not None:
            _write_atomically(
                cfg.ready_file,
                json.dumps({"grpc_port": self.grpc.port, "http_port": http_port, "health_port": health_port,
                            "pid": os.getpid()}),
            )

    @property
    def access_tokens(self) -> AccessTokens:
        return AccessTokens(write=self.tokens, read=self.read_tokens)

    def _agent_auth(self) -> KubernetesAgentAuth | None:
        """How agents prove their node (`ServeConfig.agent_auth`); None: the shared token."""
        cfg = self.config
        mode = (cfg.agent_auth or "auto").strip().lower()
        if mode not in ("auto", "kubernetes", "token"):
            raise AgentAuthConfigError(f"AIOS_AGENT_AUTH={cfg.agent_auth!r}: expected kubernetes or token")
        if mode == "token" or (mode == "auto" and self._kube_client is None):
            log.info("agents authenticate with the shared token (AIOS_AGENT_AUTH=token): a holder may speak for any node")
            return None
        if self._kube_client is None:
            raise AgentAuthConfigError(
                "AIOS_AGENT_AUTH=kubernetes needs a Kubernetes API (in-cluster, --kubeconfig or KUBECONFIG)")
        try:
            account = ServiceAccountRef.parse(cfg.agent_service_account, default_namespace=pod_namespace(cfg.env))
        except ValueError as e:
            raise AgentAuthConfigError(str(e)) from e
        log.info("agents authenticate as ServiceAccount %s (TokenReview, audience aios-aggregator), "
                 "each bound to its node", account.username)
        return KubernetesAgentAuth(self._kube_client, service_account=account, clock=self.clock)

    def policy_config(self) -> PolicyConfig:
        """Read at each policy load: env (the sidecar URL, POLICY_*) over the cluster document's `config`."""
        cluster_config = None
        if self.cluster_store is not None and self.config.cluster_id:
            try:
                cluster_config = self.cluster_store.get(self.config.cluster_id).get("config")
            except UnknownCluster:
                pass
        return PolicyConfig.from_env(
            self.config.env, cluster_config=cluster_config if isinstance(cluster_config, Mapping) else None
        )

    async def _tokens_from_secret(self, core_v1) -> None:
        """No token configured (its mounted file is not there yet): the Secret's, created if missing."""
        name = self.config.token_secret
        namespace = pod_namespace(self.config.env)
        if core_v1 is None or not name:
            raise NoToken(f"no token: AIOS_TOKEN / AIOS_TOKEN_FILE give none, and without a Kubernetes API the "
                          f"Secret {namespace}/{name} (AIOS_TOKEN_SECRET) cannot be read or created")
        self.token_secret = await asyncio.to_thread(ensure_token_secret, core_v1, namespace, name)
        self.tokens = self.token_secret.tokens
        self.read_tokens = self.read_tokens or self.token_secret.read_tokens
        log.info("tokens: %d from Secret %s/%s (%s)", len(self.tokens), namespace, name,
                 "created now" if self.token_secret.created else "it existed")

    def _open_governance_policy(self, source: str):
        return self.policy_errors.counting(open_policy)(source, config=self.policy_config())

    def _seed_policy_map(self, cluster_id: str) -> None:
        """Actions without a pre-check policy get the stored document's `config.actionsPolicyMap` entry."""
        if not cluster_id or cluster_id != self.config.cluster_id or self.cluster_store is None or self.governance is None:
            return
        try:
            mapping = (self.cluster_store.get(cluster_id).get("config") or {}).get("actionsPolicyMap")
        except UnknownCluster:
            return
        if not isinstance(mapping, Mapping) or not mapping:
            return
        try:
            current = self.governance.seed(mapping)
        except GovernanceError as e:
            log.warning("config.actionsPolicyMap of cluster %s not used: %s", cluster_id, e)
            return
        log.info("pre-check map: %d action(s) with a policy", len(current))

    def _core_v1(self):
        cfg = self.config
        if not cfg.kubernetes:
            log.info("Kubernetes: off (--no-kubernetes): no Node watch, no stability Events")
            return None
        try:
            self._kube_client = load_kube_client(cfg.kubeconfig, env=cfg.env)
        except KubeUnavailable as e:
            log.info("Kubernetes: off (%s): deleted Nodes are not noticed, no stability Events", e)
            return None
        from kubernetes import client

        return client.CoreV1Api(self._kube_client)

    def _add_quarantine(
        self, core_v1: Any, db: Database, registry: NodeRegistry, stability: StabilityParts, governance: Governance,
        ingest: IngestService,
    ) -> QuarantineWiring:
        """The quarantine and the acknowledgements: an operator's `acknowledge` (POST /mgmt) is recorded,
        sent to the node's agent (now, and after each hello), and the quarantine judges with it."""
        cfg = self.config
        book = self.acknowledgements = AcknowledgementBook(db, clock=self.clock)
        checker = stability.checker

        def acknowledged(action: str, data: dict, result: Any) -> None:
            if action != "acknowledge":
                return
            node_ids = [o.state.node_id for o in registry.overview()]
            book.record(acknowledgements_from(result, data, node_ids, self.clock(),
                                              reason=f"stability policy acknowledge {json.dumps(data)[:200]}"))

        def to_agent(node_id: str, ack: Any) -> None:
            ingest.send_to_node(node_id, pb.AggregatorMessage(acknowledgement=convert.acknowledgement_to_pb(ack)))

        checker.on_management(acknowledged)
        book.on_acknowledged(to_agent)
        ingest.hello_messages = lambda node_id: [
            pb.AggregatorMessage(acknowledgement=convert.acknowledgement_to_pb(a)) for a in book.for_node(node_id)[-20:]
        ]
        quarantine = build_quarantine(
            env=cfg.env, db=db, registry=registry, precheck=governance.precheck, cluster_data=self._cluster_document,
            kube_nodes=lambda: self.node_watcher.known() if self.node_watcher is not None else [],
            note_written=lambda node: self.node_watcher.note_written(node) if self.node_watcher is not None else None,
            core_v1=core_v1, namespace=pod_namespace(cfg.env), acknowledgements=book.by_node,
            latest_verdict=checker.latest, clock=self.clock,
        )
        controller = quarantine.controller
        checker.on_verdict(controller.on_verdict)
        book.on_acknowledged(lambda node_id, ack: controller.request())
        checker.add_node_field("quarantine", quarantine.nodes_field)
        return quarantine

    def _cluster_document(self) -> dict:
        if self.cluster_store is None or not self.config.cluster_id:
            return {}
        try:
            return self.cluster_store.get(self.config.cluster_id)
        except UnknownCluster:
            return {}

    def _http_app(
        self, registry: NodeRegistry, stability: StabilityParts, governance: Governance, cluster_store: ClusterStore,
        quarantine: QuarantineWiring, ingest: IngestService, health: HealthChecks,
    ) -> FastAPI:
        cfg = self.config
        metrics = build_aggregator_registry(
            AggregatorMetricsProviders(
                nodes=registry.snapshot,
                cluster_id=cfg.cluster_id,
                stability=stability.checker.latest,
                policy_errors=self.policy_errors,
                ingest=ingest.stats,
                per_node=cfg.per_node_metrics,
                clock=self.clock,
                health_rule=registry.health_rule,
            )
        )
        metrics.register(QuarantineCollector(
            quarantine.controller, cluster_id=cfg.cluster_id,
            cluster_size=lambda: max(len(registry.overview()),
                                     len(self.node_watcher.known()) if self.node_watcher is not None else 0),
        ))
        return create_app(
            governance=governance,
            cluster_store=cluster_store,
            tokens=self.access_tokens,
            lane=self.work_lane,
            routers=[
                healthz_router(health),
                stability.router,
                enrollment_router(self.onboarding.enrollment if self.onboarding else None),
                metrics_router(metrics),
                addons_router_for(cluster_store=cluster_store, cluster_id=cfg.cluster_id, api_client=self._kube_client),
                quarantine.router,
            ],
        )

    # ------------------------------------------------------------ health

    def _grpc_up(self) -> bool:
        return self.grpc is not None and not self._stopping

    def _db_up(self) -> bool:
        return self.db is not None and self.db.ping()

    def _http_listening(self, port: int) -> None:
        self._http_port = port

    def _http_up(self) -> bool:
        return self._http_port is not None and not self._stopping

    # ------------------------------------------------------------ Kubernetes Nodes

    def _registry_entries(self) -> list[tuple[str, str]]:
        if self.registry is None:
            return []
        return [(o.state.node_id, o.state.inventory.node_name) for o in self.registry.overview()]

    def _nodes_listed(self, nodes: list[KubeNode]) -> None:
        """The first list: report registry nodes Kubernetes does not know, remove nothing."""
        matched = {node_id for kube in nodes for node_id in registry_matches(kube, self._registry_entries())}
        for node_id, _ in self._registry_entries():
            if node_id not in matched:
                log.warning(
                    "node %s is in the registry but Kubernetes lists no such Node: kept "
                    "(only a deletion seen while watching removes a node)", node_id,
                )

    def _node_deleted(self, kube: KubeNode) -> None:
        """On the watcher's thread: remove the matching registry node(s) on the loop."""
        loop, ingest = self._loop, self.ingest
        if loop is None or ingest is None or self._stopping:
            return
        for node_id in registry_matches(kube, self._registry_entries()):
            future = asyncio.run_coroutine_threadsafe(ingest.remove_node(node_id), loop)
            if future.result(30.0):
                log.info("node %s removed (Kubernetes Node %s deleted)", node_id, kube.name)

    # ------------------------------------------------------------ stop

    async def stop(self) -> None:
        self._stopping = True
        if self.node_watcher is not None:
            await asyncio.to_thread(self.node_watcher.close)
        if self.health_listener is not None:
            await asyncio.to_thread(self.health_listener.close)
        if self.http is not None:
            await asyncio.to_thread(self.http.stop)
        self.work_lane.close()
        if self.health is not None:
            self.health.close()
        if self.grpc is not None:
            await self.grpc.stop(grace_s=1.0)
        if self.quarantine is not None:
            await asyncio.to_thread(self.quarantine.controller.close)
        if self.stability is not None:
            await asyncio.to_thread(self.stability.close)
        if self.onboarding is not None:
            self.onboarding.close()
        if self.governance is not None:
            await asyncio.to_thread(self.governance.close)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ingest is not None:
            await self.ingest.commit_once()  # what was received is kept, though not acked
        if self._kube_client is not None:
            self._kube_client.close()
        if self.db is not None:
            self.db.close()


def _with_absolute_cache_dir(env: Mapping[str, str]) -> Mapping[str, str]:
    """A relative AIOS_POLICY_CACHE_DIR, resolved once here, where the aggregator started."""
    cache_dir = env.get("AIOS_POLICY_CACHE_DIR", "").strip()
    if not cache_dir or Path(cache_dir).expanduser().is_absolute():
        return env
    return {**env, "AIOS_POLICY_CACHE_DIR": str(Path(cache_dir).expanduser().absolute())}


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
    try:
        await aggregator.start()
        await stopping.wait()
        log.info("stopping")
    finally:
        await aggregator.stop()
