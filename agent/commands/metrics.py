"""`aios-agent metrics`: sample the node and serve Prometheus metrics, nothing else.

The exporter alone, for a node that streams to no aggregator (or to try the
agent out): the same `/metrics` the full agent serves, on `AIOS_METRICS_PORT`.
Scrapes read the latest sample; sampling runs on its own cadence.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time

from agent.commands.common import common_parser, interval_seconds, open_reader_from_args, port_number
from agent.metrics import AgentMetricsProviders, AgentMetricsState, metrics_port_from_env, serve_agent_metrics

__all__ = ["register", "run"]

log = logging.getLogger(__name__)

INVENTORY_REFRESH_S = 300.0  # GPUs and disks change rarely; the annotator watches closer






def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "metrics",
        parents=[common_parser()],
        help="sample the node every --interval and serve Prometheus metrics on --port (no aggregator)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=None,
        help="port of /metrics (env AIOS_METRICS_PORT, default 9402)",
    )
    parser.add_argument("--addr", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--interval",
        type=interval_seconds,
        default=os.environ.get("AIOS_INTERVAL_S", "10"),
        help="seconds between samples (env AIOS_INTERVAL_S, default 10)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, stop: threading.Event | None = None, clock=time.monotonic) -> int:
    stop = stop or _stop_on_signals()
    port = args.port if args.port is not None else metrics_port_from_env()
    state = AgentMetricsState()
    with open_reader_from_args(args) as reader:
        inventory = reader.inventory()
        inventory_at = clock()
        state.set_inventory(inventory)
        server = serve_agent_metrics(port, AgentMetricsProviders(state.readings), addr=args.addr)
        log.info("serving metrics of node %s on %s:%d/metrics", reader.node_id, args.addr, server.port)
        try:
            while not stop.is_set():
                started = clock()
                if started - inventory_at >= INVENTORY_REFRESH_S:
                    inventory, inventory_at = reader.inventory(), started
                state.record(inventory, reader.sample())
                stop.wait(max(0.0, args.interval - (clock() - started)))
        finally:
            server.close()
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
