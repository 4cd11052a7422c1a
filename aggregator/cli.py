"""`aios-aggregator`: the aggregator's command line (argparse subcommands).

Each subcommand's body lives in its own module, registered here in one line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aggregator import policy_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aios-aggregator", description="AIOS cluster aggregator")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    policy_command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
