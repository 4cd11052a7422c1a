"""`aios-aggregator serve`: run the aggregator (gRPC ingest and queries; HTTP for the network).

Environment (an empty value counts as unset; a flag wins over its variable):
`AIOS_TOKEN` / `AIOS_TOKEN_FILE` (the write token), `AIOS_READ_TOKEN` /
`AIOS_READ_TOKEN_FILE` (read-only tokens), or in a cluster `AIOS_TOKEN_SECRET` (the
Secret read, or created on the first start, when they give no token; see
`aggregator.token_secret`), `AIOS_AGENT_AUTH` (`kubernetes` or `token`;
default kubernetes when a Kubernetes API is configured), `AIOS_AGENT_SERVICE_ACCOUNT`
(the agents' ServiceAccount, default `aios-agent` in the pod's namespace), `AIOS_CLUSTER_ID`, `AIOS_GRPC_PORT` (50051),
`AIOS_HTTP_PORT` (8080), `AIOS_HEALTH_PORT` (off), `AIOS_DB_PATH`, `AIOS_API_URL`, `KUBECONFIG`; read by the parts:
`CLUSTER_STABILITY_CHECK_INTERVAL`, `AIOS_STABILITY_WEBHOOK_URL` (stability),
`POLICY_DB_URL`, `POLICY_EXECUTOR_HOST_URL`, `POLICY_EXECUTION_MODE`,
`POLICY_SYSTEM_EXECUTOR_ID`, `AIOS_POLICY_SIDECAR_URL`, `AIOS_POLICY_*` (policies),
`AIOS_NAMESPACE` (where stability Events go; default the pod's namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from aggregator.auth import AuthError, load_read_tokens, load_tokens
from aggregator.kube_client import kubeconfig_search
from aggregator.policies import PolicyConfigError
from aggregator.rpc.agent_auth import AgentAuthConfigError
from aggregator.rpc.server import TlsFiles
from aggregator.service import NoToken, ServeConfig, serve
from aggregator.stability.checker import ConfigError as StabilityConfigError
from aggregator.token_secret import TokenSecretError
from proto.common.hardening import set_not_dumpable

__all__ = ["register", "run"]

DEFAULT_DB = "/var/lib/aios/aggregator.db"

log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as e:
        raise SystemExit(f"{name}={value!r}: not an integer") from e


def _optional_port(name: str) -> int | None:
    return _env_int(name, -1) if _env(name) else None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the aggregator", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port (AIOS_GRPC_PORT, default 50051)")
    p.add_argument("--http-port", type=int, default=None, help="HTTP port (AIOS_HTTP_PORT, default 8080)")
    p.add_argument("--health-port", type=int, default=None,
                   help="also serve GET /healthz alone on this port, on a thread of its own (AIOS_HEALTH_PORT)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--db", default=None, help=f"SQLite file (AIOS_DB_PATH, default {DEFAULT_DB})")
    p.add_argument("--cluster-id", default=None, help="this cluster's id (AIOS_CLUSTER_ID)")
    p.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="... and this private key (PEM)")
    p.add_argument("--stale-after", type=float, default=3.0, help="intervals missed before a node is stale (3)")
    p.add_argument("--agent-interval", type=float, default=None, help="tell agents to sample every N seconds")
    p.add_argument("--commit-interval", type=float, default=0.1, help="seconds between store commits (0.1)")
    p.add_argument("--max-message-kb", type=int, default=256, help="largest accepted agent message (256 KiB)")
    p.add_argument("--max-nodes", type=int, default=10_000, help="most node ids this aggregator takes (10000)")
    p.add_argument("--api-url", default=None, help="the network's parser, to register nodes joining later (AIOS_API_URL)")
    p.add_argument("--kubeconfig", default=None,
                   help=f"Kubernetes API for the Node watch and Events (default: {kubeconfig_search()}; "
                        "neither: those features are off)")
    p.add_argument("--no-kubernetes", action="store_true", help="do not use the Kubernetes API at all")
    p.add_argument("--per-node-metrics", action="store_true",
                   help="/metrics also serves every node's latest GPU and host series")
    p.add_argument("--ready-file", type=Path, help="write the bound ports here (JSON) once serving")
    p.set_defaults(run=run)


def _env(name: str) -> str | None:
    """An env var's value; unset and empty (a ConfigMap's `""`) are the same."""
    value = os.environ.get(name, "").strip()
    return value or None


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    secret = None if args.no_kubernetes else _env("AIOS_TOKEN_SECRET")
    env = {k: v for k, v in os.environ.items() if v.strip()}
    try:
        tokens = load_tokens(env)
    except AuthError as e:
        if secret is None:
            raise SystemExit(f"aios-aggregator: {e}") from e
        # the Secret's volume is optional and filled a minute or two after the Secret appears
        log.info("%s: the tokens come from Secret %s (AIOS_TOKEN_SECRET) instead", e, secret)
        tokens = ()
    try:
        read_path = env.get("AIOS_READ_TOKEN_FILE", "").strip()
        if read_path and not Path(read_path).exists():
            # the Secret's optional key `read-token` is not there (yet): only the write token works
            if not (secret and not tokens):  # else the Secret read at start gives the read token too
                log.warning("AIOS_READ_TOKEN_FILE=%s does not exist: no read-only token is accepted", read_path)
            env.pop("AIOS_READ_TOKEN_FILE")
        read_tokens = load_read_tokens(env)
    except AuthError as e:
        raise SystemExit(f"aios-aggregator: {e}") from e
    if not tokens and secret is None:
        raise SystemExit("aios-aggregator: no token: set AIOS_TOKEN or AIOS_TOKEN_FILE, or AIOS_TOKEN_SECRET in a "
                         "cluster (nothing is served unauthenticated)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("aios-aggregator: --tls-cert and --tls-key go together")
    return ServeConfig(
        db_path=Path(args.db or _env("AIOS_DB_PATH") or DEFAULT_DB),
        tokens=tokens,
        token_secret=secret,
        read_tokens=read_tokens,
        agent_auth=_env("AIOS_AGENT_AUTH") or "auto",
        agent_service_account=_env("AIOS_AGENT_SERVICE_ACCOUNT") or "aios-agent",
        grpc_port=args.grpc_port if args.grpc_port is not None else _env_int("AIOS_GRPC_PORT", 50051),
        http_port=args.http_port if args.http_port is not None else _env_int("AIOS_HTTP_PORT", 8080),
        health_port=args.health_port if args.health_port is not None else _optional_port("AIOS_HEALTH_PORT"),
        host=args.host,
        cluster_id=args.cluster_id or _env("AIOS_CLUSTER_ID") or "",
        tls=TlsFiles(args.tls_cert, args.tls_key) if args.tls_cert else None,
        stale_after_intervals=args.stale_after,
        agent_interval_s=args.agent_interval,
        commit_interval_s=args.commit_interval,
        max_message_bytes=args.max_message_kb * 1024,
        max_nodes=args.max_nodes,
        ready_file=args.ready_file,
        api_url=args.api_url or _env("AIOS_API_URL"),
        kubeconfig=args.kubeconfig,
        kubernetes=not args.no_kubernetes,
        per_node_metrics=args.per_node_metrics,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    set_not_dumpable()  # this process holds the tokens: no same-uid process may read its memory or environ
    try:
        asyncio.run(serve(config))
    except (OSError, PolicyConfigError, StabilityConfigError, AgentAuthConfigError, TokenSecretError, NoToken) as e:
        print(f"aios-aggregator: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:  # uvicorn exits when the HTTP port cannot be bound (its error is logged)
        print(f"aios-aggregator: the HTTP API could not start on port {config.http_port} (exit {e.code})",
              file=sys.stderr)
        return 1
    return 0
