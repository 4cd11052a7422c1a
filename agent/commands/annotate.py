"""`aios-agent annotate`: write this node's GPUs onto its Node (no kubectl, jq or nvidia-smi).

- `--once`: read the GPUs, read the Node, patch what differs, exit
  (0 done, 1 the API refused or failed, 2 misconfigured).
- `--dry-run`: print the JSON merge patch that sets every key we own (labels
  we would remove as null) and exit, without contacting the API server.
- neither: keep the Node true: re-read the GPUs every `--interval` seconds,
  compare with the live Node every `--resync-interval` seconds, until SIGTERM.

The Node's name: `--node-name`, else NODE_NAME / KUBERNETES_NODE_NAME (the
downward API), else the hostname (the kubelet's default Node name).
The body lives here; `agent/cli.py` only registers it (`register`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from agent.commands.common import common_parser
from agent.kube.annotator import GpusUnknown, NodeAnnotator, desired_metadata, metadata_patch
from agent.kube.client import KubeApiError, KubeConfigError, NodeApi, load_api_client, node_id_from, read_node_identity
from agent.kube.identity import local_node_identity
from agent.sampling.node_reader import NodeReader, open_node_reader

__all__ = ["add_arguments", "register", "run"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_API, EXIT_CONFIG = 0, 1, 2


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"aios-agent annotate: env {key}={raw!r} is not a number of seconds") from exc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "annotate",
        parents=[common_parser()],
        help="keep the Node's gpu.aios/info annotation and gpu.aios/* labels true (--once, --dry-run)",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """The annotate flags (`--host-root`, `--nvml-library` come from the common parser)."""
    env = os.environ if env is None else env
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="patch the Node once and exit")
    mode.add_argument("--dry-run", action="store_true", help="print the patch (JSON) instead of sending it")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG, in-cluster, ~/.kube/config)")
    parser.add_argument(
        "--node-name", default=None, help="the Node's name (default: NODE_NAME, KUBERNETES_NODE_NAME, else the hostname)"
    )
    parser.add_argument("--interval", type=float, default=_env_float(env, "AIOS_INTERVAL_S", 10.0),
                        help="seconds between GPU readings in loop mode (AIOS_INTERVAL_S, default 10)")
    parser.add_argument("--resync-interval", type=float, default=_env_float(env, "AIOS_ANNOTATE_RESYNC_S", 300.0),
                        help="seconds between comparisons with the live Node (AIOS_ANNOTATE_RESYNC_S, default 300)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds per API request (default 10)")


def _node_api(kubeconfig: str | None) -> Any:
    return NodeApi(load_api_client(kubeconfig))


def run(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    open_reader: Callable[..., NodeReader] = open_node_reader,
    open_api: Callable[[str | None], Any] = _node_api,
    stop: threading.Event | None = None,
) -> int:
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    node_name = args.node_name or local_node_identity(env).node_name

    if args.dry_run:
        identity = node_id_from(None, node_name, env)
        reader = open_reader(node_id=identity.node_id, node_name=node_name, host_root=args.host_root,
                             nvml_library=args.nvml_library)
        try:
            patch = metadata_patch(desired_metadata(reader.inventory()), None)
        finally:
            reader.close()
        json.dump(patch, out, indent=2, sort_keys=True)
        out.write("\n")
        return EXIT_OK

    try:
        core_v1 = open_api(args.kubeconfig)
    except KubeConfigError as exc:
        print(f"aios-agent annotate: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    try:
        identity = read_node_identity(core_v1, node_name, env=env, request_timeout_s=args.request_timeout)
    except KubeApiError as exc:
        if args.once:
            print(f"aios-agent annotate: {exc}", file=sys.stderr)
            return EXIT_API
        # The loop keeps retrying the Node; meanwhile the id falls back to NODE_ID / the name.
        identity = node_id_from(None, node_name, env)
        log.warning("cannot read node %r yet (%s); node id %r from %s for now",
                    node_name, exc, identity.node_id, identity.id_source)

    reader = open_reader(node_id=identity.node_id, node_name=node_name, host_root=args.host_root,
                         nvml_library=args.nvml_library)
    annotator = NodeAnnotator(core_v1, node_name, resync_interval_s=args.resync_interval,
                              request_timeout_s=args.request_timeout, env=env)
    try:
        if args.once:
            return _once(annotator, reader, out)
        return _loop(annotator, reader, args.interval, stop or _stop_on_signals())
    finally:
        reader.close()


def _once(annotator: NodeAnnotator, reader: NodeReader, out: TextIO) -> int:
    try:
        patch = annotator.sync_once(reader.inventory())
    except (KubeApiError, GpusUnknown) as exc:
        print(f"aios-agent annotate: {exc}", file=sys.stderr)
        return EXIT_API
    if patch is None:
        print(f"node {annotator.node_name}: already up to date", file=out)
    else:
        print(f"node {annotator.node_name}: patched {json.dumps(patch, sort_keys=True)}", file=out)
    return EXIT_OK


def _loop(annotator: NodeAnnotator, reader: NodeReader, interval_s: float, stop: threading.Event) -> int:
    annotator.start()
    try:
        while not stop.is_set():
            # Sampling is what notices a GPU lost or back (and a MIG change); the
            # collector then rebuilds its cached inventory, which we observe.
            reader.sample()
            annotator.observe(reader.inventory())
            stop.wait(interval_s)
    finally:
        annotator.stop()
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
