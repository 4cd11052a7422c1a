"""`aios-aggregator policy run`: try a policy package exactly as the service would load it.

    aios-aggregator policy run PACKAGE --input FILE [--settings JSON|@file]
        [--parameters JSON|@file] [--mgmt ACTION]

PACKAGE is a directory, a zip/tar.gz/tar.xz (path or URL) or a policy rule URI
(resolved through POLICY_DB_URL). Prints the result as JSON on stdout; on a
policy error prints it on stderr and exits 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from aggregator.policies import EXECUTION_MODES, PolicyConfig, PolicyError, open_policy

__all__ = ["register", "run"]


class _ArgumentProblem(Exception):
    pass


def _json_argument(value: str | None, what: str) -> dict[str, Any]:
    """A JSON object given inline or as @file ('-' or '@-' reads stdin)."""
    if value is None:
        return {}
    if value == "-" or value.startswith("@"):
        name = value[1:] if value.startswith("@") else "-"
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as exc:
            raise _ArgumentProblem(f"{what}: cannot read {name}: {exc.strerror}") from exc
        where = "stdin" if name == "-" else name
    else:
        text, where = value, "the argument"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _ArgumentProblem(f"{what}: invalid JSON in {where}: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(parsed, dict):
        raise _ArgumentProblem(f"{what}: must be a JSON object, not {type(parsed).__name__}")
    return parsed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = subparsers.add_parser("policy", help="work with policy packages")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    run_parser = policy_sub.add_parser("run", help="load a policy package and run it once")
    run_parser.add_argument("package", help="directory, zip/tar.gz/tar.xz path or URL, or policy rule URI")
    run_parser.add_argument("--input", required=True, help="JSON file with the input_data ('-' for stdin)")
    run_parser.add_argument("--settings", help="JSON object or @file; overrides the stored settings")
    run_parser.add_argument("--parameters", help="JSON object or @file; overrides the stored parameters")
    run_parser.add_argument("--mgmt", metavar="ACTION", help="call management(ACTION, input) instead of eval")
    run_parser.add_argument("--mode", choices=EXECUTION_MODES, help="override POLICY_EXECUTION_MODE")
    run_parser.add_argument("--timeout", type=float, help="seconds per call (default AIOS_POLICY_TIMEOUT_S or 30)")
    run_parser.add_argument("--memory-mb", type=int, help="worker memory limit (default AIOS_POLICY_MEMORY_MB or 1024)")
    run_parser.add_argument("--no-install", action="store_true", help="do not pip-install requirements.txt")
    run_parser.add_argument("--cache-dir", type=Path, help="where packages are extracted (AIOS_POLICY_CACHE_DIR)")
    run_parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # the policy's own prints (its worker's stderr) are what an author wants to see here
    worker_log = logging.getLogger("aggregator.policies.worker")
    worker_log.setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        worker_log.addHandler(logging.StreamHandler(sys.stderr))
    try:
        input_data = _json_argument(args.input if args.input == "-" else f"@{args.input}", "--input")
        settings = _json_argument(args.settings, "--settings")
        parameters = _json_argument(args.parameters, "--parameters")
        # run here even inside the aggregator's container: the package path is the caller's
        overrides: dict[str, Any] = {"sidecar_url": ""}
        if args.mode:
            overrides["mode"] = args.mode
        if args.timeout:
            overrides["call_timeout_s"] = args.timeout
        if args.memory_mb is not None:
            overrides["memory_limit_mb"] = args.memory_mb
        if args.no_install:
            overrides["install_requirements"] = False
        if args.cache_dir:
            overrides["cache_dir"] = args.cache_dir
        config = PolicyConfig.from_env(**overrides)
    except _ArgumentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    try:
        with open_policy(args.package, settings=settings, parameters=parameters, config=config) as handle:
            result = handle.management(args.mgmt, input_data) if args.mgmt else handle.eval(input_data)
    except PolicyError as exc:
        print(f"policy error: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
