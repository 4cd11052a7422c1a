"""`aios-agent run`: the whole agent, as the DaemonSet runs it.

Sampling every interval (`agent.sampling.daemon`), streamed to the aggregator
(`agent.stream.client`), XID events pushed as they arrive; the Node's
`gpu.aios/info` annotation and labels kept true (`agent.kube.annotator`, off when
no Kubernetes API is configured); the GPU health judged by the shared rule
(`agent.gpu.health_tracker`) and kept on the Node's status as conditions
(`agent.kube.condition_writer`; off with `--no-conditions` or
AIOS_NODE_CONDITIONS=off), cleared too by operator acknowledgements coming over
the stream; `/metrics` and `/healthz` on the metrics port (`agent.metrics`,
`agent.liveness`). SIGTERM/SIGINT stop it all and exit 0.

Settings (flag, else env): `--aggregator` AIOS_AGGREGATOR_ADDR,
`--cluster-id` AIOS_CLUSTER_ID, `--interval` AIOS_INTERVAL_S,
`--metrics-port` AIOS_METRICS_PORT, `--host-root` AIOS_HOST_ROOT, the credential
(`agent.stream.credentials`: the projected ServiceAccount token AIOS_SA_TOKEN_FILE in a
cluster, else the shared AIOS_TOKEN or AIOS_TOKEN_FILE; read at each connect, waited for
while its file is missing), the Node's name NODE_NAME (downward API), the
node id the Node's `nodeID` label, else NODE_ID, else the Node's name.
Who is on the GPUs (docs/attribution.md): AIOS_ATTRIBUTION (on|off),
AIOS_POD_RESOURCES_SOCKET, AIOS_POD_RESOURCES_REFRESH_S, AIOS_METRICS_MAX_PROCESSES.
Nothing is written to disk except `--stats-file` when asked (the pod's root
filesystem is read-only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from agent.commands.common import common_parser, interval_seconds, port_number
from agent.gpu.bounded import bound_from_env, longest_wait_s
from agent.gpu.health_tracker import GpuHealthTracker, agent_rule_from_env
from agent.kube.annotator import NodeAnnotator, open_node_annotator
from agent.kube.client import KubeApiError, NodeIdentity, node_id_from, read_node_identity
from agent.kube.condition_writer import NodeConditionWriter, condition_writer_from_env
from agent.kube.identity import local_node_identity
from agent.liveness import SamplerView, health_document, healthz_app
from agent.metrics import DEFAULT_METRICS_PORT, attach_agent_metrics, max_process_series_from_env, metrics_port_from_env
from agent.sampling.daemon import DEFAULT_INTERVAL_S, AgentDaemon, interval_from_env
from agent.sampling.node_reader import open_node_reader
from agent.stream.client import StreamConfig, TelemetryStream, buffer_bytes_from_env
from agent.stream.credentials import AgentCredentials, TokenFileError, credentials_from_env
from proto.common.hardening import set_not_dumpable
from proto.health.conditions import CONDITION_TYPES
from proto.telemetry.v1.readings import NodeInventory

__all__ = [
    "agent_version",
    "identity_mismatch",
    "load_credentials",
    "register",
    "resolve_node_identity",
    "run",
    "startup_summary",
]

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return metadata.version("aios-node-telemetry")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def load_credentials(env=os.environ) -> AgentCredentials:
    """The ServiceAccount token file or the shared token (`agent.stream.credentials`), read once
    now to say at start what is wrong. Never fatal: a file not there yet (the projected token
    before the kubelet writes it, the Secret `aios-token` before the aggregator's first start
    creates it and the kubelet mounts it) is waited for, the stream retrying at each connect."""
    credentials = credentials_from_env(env)
    try:
        credentials.current()
    except TokenFileError as e:
        waits_for = ("the kubelet writes the projected token" if credentials.sa_token_file is not None else
                     "Secret aios-token, key token: the aggregator creates it on its first start, the kubelet "
                     "mounts it a minute or two later")
        log.error("%s (%s); sampling starts now, streaming once it can be read", e, waits_for)
    return credentials


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", parents=[common_parser()], help="run the agent: sample and stream to the aggregator",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=interval_seconds, default=None,
                   help=f"seconds between samples (env AIOS_INTERVAL_S or COLLECT_INTERVAL, default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("--aggregator", default=os.environ.get("AIOS_AGGREGATOR_ADDR"),
                   help="host:port of the aggregator's gRPC (env AIOS_AGGREGATOR_ADDR)")
    p.add_argument("--cluster-id", default=os.environ.get("AIOS_CLUSTER_ID", ""), help="env AIOS_CLUSTER_ID")
    p.add_argument("--tls-ca", type=Path, default=os.environ.get("AIOS_TLS_CA") or None,
                   help="CA certificate (PEM) to verify the aggregator's TLS (env AIOS_TLS_CA; default plaintext)")
    p.add_argument("--buffer-limit", type=int, default=1000, help="messages kept until acknowledged (1000)")
    p.add_argument("--metrics-port", type=port_number, default=None,
                   help=f"port of /metrics and /healthz (env AIOS_METRICS_PORT, default {DEFAULT_METRICS_PORT}; 0: any)")
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address of /metrics and /healthz (default 0.0.0.0)")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig for the Node annotator (default: KUBECONFIG, in-cluster, ~/.kube/config; "
                        "none found: the agent runs without annotating)")
    p.add_argument("--no-annotate", action="store_true",
                   help="do not keep the Node's annotation (a development machine whose kubeconfig is not its cluster)")
    p.add_argument("--no-conditions", action="store_true",
                   default=os.environ.get("AIOS_NODE_CONDITIONS", "").strip().lower() in ("off", "false", "0"),
                   help="do not keep the GPU conditions on the Node's status (env AIOS_NODE_CONDITIONS=off)")
    p.add_argument("--stats-file", type=Path, help="on exit, write the stream's counters here as JSON")
    p.set_defaults(run=run, default_log_level="INFO")  # `kubectl logs` shows what it found




def resolve_node_identity(
    annotator: NodeAnnotator | None, node_name: str, env=os.environ, request_timeout_s: float = 5.0
) -> NodeIdentity:
    """The id to stream under: the Node's `nodeID` label, else NODE_ID, else the Node's
    name (docs/network-formats.md §1). Without a cluster, or when the Node cannot be read
    now, the label is unknown: NODE_ID, else the name (logged)."""
    if annotator is None:
        return node_id_from(None, node_name, env)
    try:
        return read_node_identity(annotator.api, node_name, env=env, request_timeout_s=request_timeout_s)
    except KubeApiError as e:
        identity = node_id_from(None, node_name, env)
        log.warning("cannot read the Node for its nodeID label (%s); streaming as %r (from %s)",
                    e, identity.node_id, identity.id_source)
        return identity


def run(args: argparse.Namespace) -> int:
    if not args.aggregator:
        raise SystemExit("aios-agent run: no aggregator: pass --aggregator HOST:PORT or set AIOS_AGGREGATOR_ADDR")
    try:
        interval = args.interval or interval_from_env(os.environ) or DEFAULT_INTERVAL_S
        metrics_port = args.metrics_port if args.metrics_port is not None else metrics_port_from_env()
        max_process_series = max_process_series_from_env()
        buffer_bytes = buffer_bytes_from_env(os.environ)
    except ValueError as e:
        raise SystemExit(f"aios-agent run: {e}") from e
    try:
        call_bound_s = bound_from_env()
        rule = agent_rule_from_env()
    except ValueError as e:
        raise SystemExit(f"aios-agent run: {e}") from e
    credentials = load_credentials()
    set_not_dumpable()  # it holds its ServiceAccount token: no other process of its uid reads its memory
    # APScheduler logs every job run at INFO: one line per sample is noise
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    node_name = local_node_identity().node_name
    annotator = None
    annotating = f"on (Node {node_name})"
    if args.no_annotate:
        annotating = "off (--no-annotate)"
    else:
        try:
            annotator = open_node_annotator(node_name, kubeconfig=args.kubeconfig)
        except ValueError as e:  # a bad AIOS_ANNOTATE_RESYNC_S
            raise SystemExit(f"aios-agent run: {e}") from e
        if annotator is None:
            annotating = "off (no Kubernetes API configured)"
            log.warning("no Kubernetes API configured: the Node's gpu.aios/info annotation is not kept; running on")
    identity = resolve_node_identity(annotator, node_name)
    tracker = GpuHealthTracker(rule, call_bound_s=call_bound_s)
    writer: NodeConditionWriter | None = None
    if annotator is not None and not args.no_conditions:
        try:
            writer = condition_writer_from_env(annotator.api, node_name, CONDITION_TYPES)
        except ValueError as e:
            raise SystemExit(f"aios-agent run: {e}") from e

    try:
        reader = open_node_reader(node_id=identity.node_id, node_name=node_name, host_root=args.host_root,
                                  nvml_library=args.nvml_library)
    except ValueError as e:  # a bad AIOS_ATTRIBUTION
        raise SystemExit(f"aios-agent run: {e}") from e
    with reader:
        config = StreamConfig(
            address=args.aggregator,
            node_id=identity.node_id,
            cluster_id=args.cluster_id,
            agent_version=agent_version(),
            credentials=credentials,
            tls_ca=args.tls_ca,
            buffer_limit=args.buffer_limit,
            buffer_bytes=buffer_bytes,
            interval_s=interval,
        )
        inventory = reader.inventory()
        stream = TelemetryStream(
            config, inventory, on_instruction=lambda instruction: daemon.on_instruction(instruction),
            on_acknowledgement=tracker.acknowledge,
        )
        daemon = AgentDaemon(reader, stream, interval_s=interval)
        if annotator is not None:
            daemon.inventory_observers.append(annotator.observe)
        daemon.inventory_observers.append(tracker.observe_inventory)
        daemon.sample_observers.append(tracker.observe_sample)
        daemon.health_observers.append(tracker.observe_event)

        def healthz() -> tuple[bool, dict]:
            sampler = SamplerView(daemon.interval_s, daemon.started_at, daemon.last_run_at,
                                  daemon.counters.samples, daemon.counters.sample_failures,
                                  longest_wait_s(call_bound_s))
            return health_document(time.monotonic(), identity.node_id, sampler, stream=stream.stats(),
                                   annotator=annotator.status() if annotator is not None else None,
                                   annotator_enabled=annotator is not None,
                                   conditions=writer.status() if writer is not None else None,
                                   unresponsive_gpus=tracker.unresponsive_gpus())

        try:
            metrics = attach_agent_metrics(daemon, port=metrics_port, addr=args.metrics_addr, inventory=inventory,
                                           stream_stats=stream.stats, routes={"/healthz": healthz_app(healthz)},
                                           max_process_series=max_process_series)
        except OSError as e:
            raise SystemExit(f"aios-agent run: cannot serve /metrics and /healthz on {args.metrics_addr}:"
                             f"{metrics_port}: {e.strerror or e} (set AIOS_METRICS_PORT or --metrics-port)") from e
        daemon.initial_inventory(inventory)  # tells the inventory observers (the annotator, the metrics, the tracker)
        if writer is not None:
            tracker.on_change(writer.observe)  # every type, False unless a problem shows already: written at start
        # XIDs go out as they arrive, not with the next sample (up to one interval later)
        reader.set_health_listener(daemon.push_health)
        stream.start()
        if annotator is not None:
            annotator.start()
        if writer is not None:
            writer.start()
        daemon.start()
        log.info("%s", startup_summary(config, node_name, identity, inventory, annotating=annotating,
                                       credential=credentials.kind, metrics_port=metrics.port))
        try:
            _wait_for_stop(stopping, annotator, identity)
        finally:
            reader.set_health_listener(None)
            daemon.stop()
            if annotator is not None:
                annotator.stop()
            if writer is not None:
                writer.stop()
            stream.stop(flush_timeout_s=2.0)
            metrics.close()
    if args.stats_file:
        stats = stream.stats()
        args.stats_file.write_text(json.dumps({**stats.__dict__, "samples": daemon.counters.samples,
                                               "pushed_health_events": daemon.counters.pushed_health_events,
                                               "agent_instance": stream.agent_instance,
                                               "node_id": identity.node_id}))
    return 0


_ID_SOURCES = {"label": "its nodeID label", "env": "NODE_ID", "name": "the Node's name"}


def startup_summary(config: StreamConfig, node_name: str, identity: NodeIdentity, inventory: NodeInventory, *,
                    annotating: str, credential: str, metrics_port: int) -> str:
    """Pure: the one line a healthy start logs, saying what the agent found and where it sends it."""
    if inventory.gpus:
        names = Counter(g.name for g in inventory.gpus)
        models = ", ".join(f"{count}x {name}" for name, count in names.items())
        gpus = f"{len(inventory.gpus)} GPU(s) ({models}; driver {inventory.driver_version or '?'})"
    else:
        gpus = f"no GPUs ({inventory.nvml_status})" if inventory.nvml_status != "ok" else "no GPUs"
    host = f"{inventory.host.cpu_logical} vCPU" if inventory.host is not None else "host unread"
    source = _ID_SOURCES.get(identity.id_source, identity.id_source)
    return (f"agent {config.agent_version} on node {node_name} (id {identity.node_id}, from {source}): "
            f"{gpus}, {host}; streaming every {config.interval_s:g} s to {config.address} with its {credential}; "
            f"annotator {annotating}; metrics and /healthz on port {metrics_port}")


def identity_mismatch(streaming: NodeIdentity, seen: NodeIdentity | None) -> str | None:
    """Pure: the warning when the Node, read later, names another id than the stream's."""
    if seen is None or seen.node_id == streaming.node_id:
        return None
    return (f"the Node's id is {seen.node_id!r} (from its {seen.id_source}) but this agent streams as "
            f"{streaming.node_id!r} (the Node could not be read at start); restart the agent to stream under it")


def _wait_for_stop(stopping: threading.Event, annotator: NodeAnnotator | None, identity: NodeIdentity) -> None:
    """Until SIGTERM; meanwhile say once if the Node turns out to carry another id
    than the one we stream under (its label could not be read at start)."""
    warned = False
    while not stopping.wait(5.0):
        if annotator is None or warned:
            continue
        warning = identity_mismatch(identity, annotator.status().identity)
        if warning:
            log.warning("%s", warning)
            warned = True
