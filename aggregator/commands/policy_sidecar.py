"""`aios-aggregator policy-sidecar`: serve the policy runner (the pod's container index 1).

    aios-aggregator policy-sidecar [--host 0.0.0.0] [--port 7003] [--cache-dir DIR]
        [--token-file FILE] [--idle-close-s SECONDS]

Execution mode, executor and limits come from this process's environment
(`PolicyConfig.from_env`): `POLICY_EXECUTION_MODE`, `POLICY_SYSTEM_EXECUTOR_ID`,
`POLICY_DB_URL`, `POLICY_EXECUTOR_HOST_URL`, `AIOS_POLICY_*`. The token file is
re-read per request, so a rotated Secret is followed; without `--token-file`
the tokens come from `AIOS_TOKEN` / `AIOS_TOKEN_FILE`. Stops on SIGTERM/SIGINT,
closing every policy worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aggregator.auth import AuthError, load_tokens
from aggregator.policies import PolicyConfig, PolicyError, open_policy
from aggregator.policies.sidecar_server import DEFAULT_IDLE_CLOSE_S, HandleRegistry, create_sidecar_app
from aggregator.web.serving import serve_http

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy-sidecar", help="serve the policy runner the aggregator sends policies to")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: the kubelet probes it)")
    parser.add_argument("--port", type=int, default=7003, help="port (default 7003; 0 picks a free one)")
    parser.add_argument("--cache-dir", type=Path, help="where policy packages are extracted (AIOS_POLICY_CACHE_DIR)")
    parser.add_argument("--token-file", type=Path, help="bearer tokens, one per line (default: AIOS_TOKEN / AIOS_TOKEN_FILE)")
    parser.add_argument("--idle-close-s", type=float, default=DEFAULT_IDLE_CLOSE_S,
                        help=f"close policies unused this long (default {DEFAULT_IDLE_CLOSE_S:.0f}; 0 = never)")
    parser.set_defaults(run=run)


def _token_source(token_file: Path | None) -> Callable[[], tuple[str, ...]]:
    env = {"AIOS_TOKEN_FILE": str(token_file)} if token_file else None

    def tokens() -> tuple[str, ...]:
        try:
            return load_tokens(env)
        except AuthError as exc:
            log.error("cannot read the tokens, refusing requests: %s", exc)
            return ()

    return tokens


def run(args: argparse.Namespace) -> int:
    try:
        overrides: dict[str, Any] = {"sidecar_url": ""}  # this process runs the policies itself
        if args.cache_dir:
            overrides["cache_dir"] = args.cache_dir
        config = PolicyConfig.from_env(**overrides)
        if config.mode == "remote":
            config.require_remote()  # a wrong patch shows at start, not at the first pre-check
    except PolicyError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    if args.token_file and not args.token_file.is_file():
        print(f"error: --token-file {args.token_file}: no such file", file=sys.stderr)
        return 2

    registry = HandleRegistry(
        lambda source, settings, parameters: open_policy(source, settings=settings, parameters=parameters, config=config),
        idle_close_s=args.idle_close_s,
    )
    app = create_sidecar_app(registry=registry, tokens=_token_source(args.token_file), config=config)

    def started(port: int) -> None:
        print(f"policy runner listening on {args.host}:{port} (mode {config.mode}"
              + (f", executor {config.executor_id}" if config.executor_id else "") + ")", flush=True)

    async def main() -> None:
        task = asyncio.create_task(serve_http(app, args.host, args.port, on_started=started))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        registry.close_all()
    return 0
