"""`aios-aggregator`: one subcommand per job, each body in its own module, registered here in one line.

Each module's `register(subparsers)` adds its subparser and sets `run`, the
function `main` calls with the parsed arguments (the same convention as `aios-agent`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from aggregator.commands import addons, nodes, onboard, policy, policy_sidecar, serve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aios-aggregator", description="The cluster's telemetry aggregator.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ... (default INFO)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages (same as --log-level DEBUG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, nodes, policy, policy_sidecar, onboard, addons):
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "DEBUG" if args.verbose else str(args.log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
