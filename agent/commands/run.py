"""`aios-agent run`: the daemon (sample every interval, stream to the aggregator)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from importlib import metadata
from pathlib import Path

from agent.commands.common import open_reader_from_args
from agent.daemon import DEFAULT_INTERVAL_S, AgentDaemon, interval_from_env
from agent.identity import local_node_identity
from agent.stream_client import StreamConfig, TelemetryStream

__all__ = ["register", "run", "load_token", "agent_version"]

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return metadata.version("aios-node-telemetry")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def load_token(env=os.environ) -> str | None:
    """`AIOS_TOKEN`, else the first line of `AIOS_TOKEN_FILE` (a mounted Secret)."""
    if env.get("AIOS_TOKEN"):
        return env["AIOS_TOKEN"].strip()
    path = env.get("AIOS_TOKEN_FILE")
    if path:
        try:
            lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise SystemExit(f"aios-agent: AIOS_TOKEN_FILE={path}: cannot read: {e.strerror}") from e
        return lines[0] if lines else None
    return None


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 3600 seconds, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("run", parents=[common], help="run the agent: sample and stream to the aggregator")
    p.add_argument("--interval", type=_interval, default=None,
                   help=f"seconds between samples (env AIOS_INTERVAL_S or COLLECT_INTERVAL, default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("--aggregator", default=os.environ.get("AIOS_AGGREGATOR_ADDR"),
                   help="host:port of the aggregator's gRPC (env AIOS_AGGREGATOR_ADDR)")
    p.add_argument("--cluster-id", default=os.environ.get("AIOS_CLUSTER_ID", ""), help="env AIOS_CLUSTER_ID")
    p.add_argument("--tls-ca", type=Path, default=os.environ.get("AIOS_TLS_CA") or None,
                   help="CA certificate (PEM) to verify the aggregator's TLS (env AIOS_TLS_CA; default plaintext)")
    p.add_argument("--buffer-limit", type=int, default=1000, help="messages kept until acknowledged (1000)")
    p.add_argument("--stats-file", type=Path, help="on exit, write the stream's counters here as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.aggregator:
        raise SystemExit("aios-agent run: no aggregator: pass --aggregator HOST:PORT or set AIOS_AGGREGATOR_ADDR")
    try:
        interval = args.interval or interval_from_env(os.environ) or DEFAULT_INTERVAL_S
    except ValueError as e:
        raise SystemExit(f"aios-agent run: {e}") from e
    identity = local_node_identity()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    with open_reader_from_args(args) as reader:
        config = StreamConfig(
            address=args.aggregator,
            node_id=identity.node_id,
            cluster_id=args.cluster_id,
            agent_version=agent_version(),
            token=load_token(),
            tls_ca=args.tls_ca,
            buffer_limit=args.buffer_limit,
            interval_s=interval,
        )
        daemon = AgentDaemon(reader, sink=None, interval_s=interval)  # sink set below
        inventory = daemon.initial_inventory()
        stream = TelemetryStream(config, inventory, on_instruction=daemon.on_instruction)
        daemon.sink = stream
        # hook points: the lead wires the Kubernetes annotator and the metrics exporter here, e.g.
        #   daemon.inventory_observers.append(annotator.observe)
        #   daemon.sample_observers.append(exporter.update)
        stream.start()
        daemon.start()
        log.info("agent %s for node %s streaming to %s", config.agent_version, identity.node_id, args.aggregator)
        stopping.wait()
        daemon.stop()
        stream.stop(flush_timeout_s=2.0)
    if args.stats_file:
        stats = stream.stats()
        args.stats_file.write_text(json.dumps({**stats.__dict__, "samples": daemon.counters.samples,
                                               "agent_instance": stream.agent_instance}))
    return 0
