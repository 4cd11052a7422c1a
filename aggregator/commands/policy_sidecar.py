"""`aios-aggregator policy-sidecar`: serve the policy runner (the pod's container index 1).

    aios-aggregator policy-sidecar [--host 0.0.0.0] [--port 7003] [--cache-dir DIR]
        [--token-file FILE] [--probe-interval-s SECONDS] [--idle-close-s SECONDS]

Execution mode, executor and limits come from this process's environment
(`PolicyConfig.from_env`): `POLICY_EXECUTION_MODE`, `POLICY_SYSTEM_EXECUTOR_ID`,
`POLICY_DB_URL`, `POLICY_EXECUTOR_HOST_URL`, `AIOS_POLICY_*`. No setting stops
it: a bad or missing one (remote mode without an executor), an unreachable
executor or policy DB, or a token it cannot read or make, is answered in every
policy call and listed on `/healthz` (`problems`), and it recovers when the
service appears (`aggregator.policies.runner_health`).

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
from aggregator.policies import open_policy
from aggregator.policies.runner_health import ServiceProbe, read_runner_settings, runner_health
from aggregator.policies.sandbox import probe as probe_sandbox
from aggregator.policies.sidecar_server import DEFAULT_IDLE_CLOSE_S, HandleRegistry, create_sidecar_app
from aggregator.web.serving import serve_http
from proto.common.hardening import set_not_dumpable

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy-sidecar", help="serve the policy runner the aggregator sends policies to",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: the kubelet probes it)")
    parser.add_argument("--port", type=int, default=7003, help="port (default 7003; 0 picks a free one)")
    parser.add_argument("--cache-dir", type=Path, help="where policy packages are extracted (AIOS_POLICY_CACHE_DIR)")
    parser.add_argument("--token-file", type=Path,
                        help="this runner's own token, created when missing (default AIOS_POLICY_SIDECAR_TOKEN_FILE; "
                             "or the token itself in AIOS_POLICY_SIDECAR_TOKEN)")
    parser.add_argument("--probe-interval-s", type=float, default=30.0,
                        help="seconds between checks that the policy DB / executor answer (default 30)")
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


def _own_token(token_file: Path | None) -> str:
    """"" when the runner has its token (made now if need be), else why it has none (its calls are refused)."""
    if token_file is None:
        if os.environ.get("AIOS_POLICY_SIDECAR_TOKEN", "").strip():
            return ""
        return ("the policy runner has no token of its own: give --token-file FILE (created when missing) "
                "or AIOS_POLICY_SIDECAR_TOKEN; every policy call is refused (401)")
    try:
        ensure_token_file(token_file)
    except (OSError, AuthError) as exc:
        return f"--token-file {token_file}: {exc}; every policy call is refused (401)"
    return ""


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"sidecar_url": ""}  # this process runs the policies itself
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    settings = read_runner_settings(**overrides)
    if settings.problem:
        print(f"warning: {settings.problem}; serving anyway: every policy call answers this, and /healthz "
              "lists it, until the setting is fixed", file=sys.stderr, flush=True)
    config = settings.config
    token_file = args.token_file or (Path(os.environ["AIOS_POLICY_SIDECAR_TOKEN_FILE"])
                                     if os.environ.get("AIOS_POLICY_SIDECAR_TOKEN_FILE", "").strip() else None)
    token_problem = _own_token(token_file)
    if token_problem:
        print(f"warning: {token_problem}", file=sys.stderr, flush=True)
    set_not_dumpable()  # its workers must not read its environment or memory
    sandbox: dict[str, Any] = {}
    if config is not None and config.mode == "local":
        try:
            sandbox = probe_sandbox(config.sandbox_limits, scratch_root=config.cache_dir / "scratch")
        except (OSError, subprocess.SubprocessError) as exc:  # say so on /healthz; policies still run
            sandbox = {"not_enforced": [f"the sandbox probe failed: {exc}"]}
    for gap in sandbox.get("not_enforced", ()):
        log.warning("policy sandbox: not enforced here: %s", gap)
    services = ServiceProbe(settings.services(), interval_s=args.probe_interval_s).start()

    registry = HandleRegistry(
        lambda source, settings_, parameters: open_policy(
            source, settings=settings_, parameters=parameters, config=settings.require_config()),
        idle_close_s=args.idle_close_s,
    )
    app = create_sidecar_app(registry=registry, tokens=_token_source(token_file), config=config, sandbox=sandbox,
                             health=lambda: runner_health(settings, services.results(), token_problem))

    def started(port: int) -> None:
        mode = config.mode if config is not None else "none: settings unusable"
        print(f"policy runner listening on {args.host}:{port} (mode {mode}"
              + (f", executor {config.executor_id}" if config is not None and config.executor_id else "") + ")",
              flush=True)

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
        services.close()
        registry.close_all()
    return 0
