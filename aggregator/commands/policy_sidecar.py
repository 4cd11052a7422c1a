"""`aios-aggregator policy-sidecar`: serve the policy runner (the pod's container index 1).

    aios-aggregator policy-sidecar [--host 0.0.0.0] [--port 7003] [--cache-dir DIR]
        [--token-file FILE] [--idle-close-s SECONDS]

Execution mode, executor and limits come from this process's environment
(`PolicyConfig.from_env`): `POLICY_EXECUTION_MODE`, `POLICY_SYSTEM_EXECUTOR_ID`,
`POLICY_DB_URL`, `POLICY_EXECUTOR_HOST_URL`, `AIOS_POLICY_*`. No setting stops
it: a bad or missing one (remote mode without an executor), an unreachable
executor or policy DB, a token file not there yet, are each answered in every
policy call and listed on `/healthz` (`problems`), and it recovers when the
service or the file appears (`aggregator.policies.runner_health`). The token
file is re-read per request, so a rotated Secret is followed; without
`--token-file` the tokens come from `AIOS_TOKEN` / `AIOS_TOKEN_FILE`. Stops on
SIGTERM/SIGINT, closing every policy worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aggregator.auth import AuthError, load_tokens
from aggregator.policies import open_policy
from aggregator.policies.runner_health import ServiceProbe, read_runner_settings, runner_health
from aggregator.policies.sidecar_server import DEFAULT_IDLE_CLOSE_S, HandleRegistry, create_sidecar_app
from aggregator.web.serving import serve_http

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy-sidecar", help="serve the policy runner the aggregator sends policies to",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: the kubelet probes it)")
    parser.add_argument("--port", type=int, default=7003, help="port (default 7003; 0 picks a free one)")
    parser.add_argument("--cache-dir", type=Path, help="where policy packages are extracted (AIOS_POLICY_CACHE_DIR)")
    parser.add_argument("--token-file", type=Path, help="bearer tokens, one per line (default: AIOS_TOKEN / AIOS_TOKEN_FILE)")
    parser.add_argument("--probe-interval-s", type=float, default=30.0,
                        help="seconds between checks that the policy DB / executor answer (default 30)")
    parser.add_argument("--idle-close-s", type=float, default=DEFAULT_IDLE_CLOSE_S,
                        help=f"close policies unused this long (default {DEFAULT_IDLE_CLOSE_S:.0f}; 0 = never)")
    parser.set_defaults(run=run)


class _TokenFile:
    """The runner's accepted tokens, re-read per request; says so once when they cannot be read
    (the Secret's file appears a minute or two after the aggregator creates it) and once when
    they can again."""

    def __init__(self, token_file: Path | None) -> None:
        self._env = {"AIOS_TOKEN_FILE": str(token_file)} if token_file else None
        self.problem = ""

    def __call__(self) -> tuple[str, ...]:
        try:
            tokens = load_tokens(self._env)
            problem = "" if tokens else "no token configured (--token-file, AIOS_TOKEN or AIOS_TOKEN_FILE)"
        except AuthError as exc:
            tokens, problem = (), f"cannot read the tokens, refusing policy calls: {exc}"
        if problem != self.problem:
            if problem:
                log.warning("%s", problem)
            else:
                log.info("tokens read: policy calls are accepted")
            self.problem = problem
        return tokens


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"sidecar_url": ""}  # this process runs the policies itself
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    settings = read_runner_settings(**overrides)
    if settings.problem:
        print(f"warning: {settings.problem}; serving anyway: every policy call answers this, and /healthz "
              "lists it, until the setting is fixed", file=sys.stderr, flush=True)
    config = settings.config
    tokens = _TokenFile(args.token_file)
    tokens()  # says now if the token file is not there yet
    probe = ServiceProbe(settings.services(), interval_s=args.probe_interval_s).start()

    registry = HandleRegistry(
        lambda source, settings_, parameters: open_policy(
            source, settings=settings_, parameters=parameters, config=settings.require_config()),
        idle_close_s=args.idle_close_s,
    )
    app = create_sidecar_app(registry=registry, tokens=tokens, config=config,
                             health=lambda: runner_health(settings, probe.results(), tokens.problem))

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
        probe.close()
        registry.close_all()
    return 0
