"""`aios-aggregator policy-sidecar`: serve the policy runner (the pod's container index 1).

    aios-aggregator policy-sidecar [--host 0.0.0.0] [--port 7003] [--cache-dir DIR]
        [--token-file FILE] [--idle-close-s SECONDS]

Execution mode, executor and limits come from this process's environment
(`PolicyConfig.from_env`): `POLICY_EXECUTION_MODE`, `POLICY_SYSTEM_EXECUTOR_ID`,
`POLICY_DB_URL`, `POLICY_EXECUTOR_HOST_URL`, `AIOS_POLICY_*`.

Its token is its own, never the aggregator's: it grants policy calls only.
`--token-file` (else `AIOS_POLICY_SIDECAR_TOKEN_FILE`) names a file the pod's two
containers share; whichever starts first creates it with a random token
(`aggregator.auth.ensure_token_file`), and it is re-read per request.
`AIOS_POLICY_SIDECAR_TOKEN` gives the token itself instead. This process is
not dumpable, so its workers cannot read its environment or memory, and
`/healthz` says what the policy sandbox enforces here (docs/policy-sandbox.md).
Stops on SIGTERM/SIGINT, closing every policy worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aggregator.auth import AuthError, ensure_token_file, tokens_from_env
from aggregator.policies import PolicyConfig, PolicyError, open_policy
from aggregator.policies.sandbox import probe
from aggregator.policies.sidecar_server import DEFAULT_IDLE_CLOSE_S, HandleRegistry, create_sidecar_app
from aggregator.web.serving import serve_http
from proto.common.hardening import set_not_dumpable

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy-sidecar", help="serve the policy runner the aggregator sends policies to")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: the kubelet probes it)")
    parser.add_argument("--port", type=int, default=7003, help="port (default 7003; 0 picks a free one)")
    parser.add_argument("--cache-dir", type=Path, help="where policy packages are extracted (AIOS_POLICY_CACHE_DIR)")
    parser.add_argument("--token-file", type=Path,
                        help="this runner's own token, created when missing (default AIOS_POLICY_SIDECAR_TOKEN_FILE; "
                             "or the token itself in AIOS_POLICY_SIDECAR_TOKEN)")
    parser.add_argument("--idle-close-s", type=float, default=DEFAULT_IDLE_CLOSE_S,
                        help=f"close policies unused this long (default {DEFAULT_IDLE_CLOSE_S:.0f}; 0 = never)")
    parser.set_defaults(run=run)


def _token_source(token_file: Path | None) -> Callable[[], tuple[str, ...]]:
    """The runner's accepted tokens, read per request (a replaced file is followed)."""
    env = {"AIOS_TOKEN_FILE": str(token_file)} if token_file else {"AIOS_TOKEN": os.environ.get("AIOS_POLICY_SIDECAR_TOKEN", "")}

    def tokens() -> tuple[str, ...]:
        try:
            return tokens_from_env(env)
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
    token_file = args.token_file or (Path(os.environ["AIOS_POLICY_SIDECAR_TOKEN_FILE"])
                                     if os.environ.get("AIOS_POLICY_SIDECAR_TOKEN_FILE", "").strip() else None)
    if token_file is None and not os.environ.get("AIOS_POLICY_SIDECAR_TOKEN", "").strip():
        print("error: the policy runner needs its own token: --token-file FILE (created when missing) "
              "or AIOS_POLICY_SIDECAR_TOKEN", file=sys.stderr)
        return 2
    if token_file is not None:
        try:
            ensure_token_file(token_file)
        except (OSError, AuthError) as exc:
            print(f"error: --token-file {token_file}: {exc}", file=sys.stderr)
            return 2
    set_not_dumpable()  # its workers must not read its environment or memory
    sandbox: dict[str, Any] = {}
    if config.mode == "local":
        try:
            sandbox = probe(config.sandbox_limits, scratch_root=config.cache_dir / "scratch")
        except (OSError, subprocess.SubprocessError) as exc:  # say so on /healthz; policies still run
            sandbox = {"not_enforced": [f"the sandbox probe failed: {exc}"]}
    for gap in sandbox.get("not_enforced", ()):
        log.warning("policy sandbox: not enforced here: %s", gap)

    registry = HandleRegistry(
        lambda source, settings, parameters: open_policy(source, settings=settings, parameters=parameters, config=config),
        idle_close_s=args.idle_close_s,
    )
    app = create_sidecar_app(registry=registry, tokens=_token_source(token_file), config=config, sandbox=sandbox)

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
