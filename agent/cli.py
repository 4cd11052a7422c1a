"""`aios-agent`: the node agent's command line.

Each subcommand lives in its own module under `agent.commands`: its
`register(subparsers)` adds the subparser (the shared flags come from
`agent.commands.common.common_parser()`) and sets `run`, the function
`main` calls with the parsed arguments (the same convention as
`aios-aggregator`). Adding one is an import and a line in `_COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from agent.commands import annotate, inventory, metrics, run, sample
from agent.commands.common import log_level

__all__ = ["build_parser", "main"]

_COMMANDS = (inventory, sample, annotate, run, metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aios-agent", description="Node telemetry agent for GPU clusters.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=log_level(args), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # the reader of our output went away (`aios-agent sample | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
