"""`aios-agent sample`: one full reading of the node as JSON, rates included."""

from __future__ import annotations

import argparse
import time

from agent.commands.common import common_parser, interval_seconds, open_reader_from_args, print_json, to_jsonable

__all__ = ["register"]




def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sample",
        parents=[common_parser()],
        help="print one sample of the node as JSON (two readings --interval apart, so rates are known)",
    )
    parser.add_argument("--interval", type=interval_seconds, default=1.0, help="seconds between the two readings (default 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, sleep=time.sleep) -> int:
    with open_reader_from_args(args) as reader:
        first = reader.sample()
        sleep(args.interval)
        sample = reader.sample()
    document = to_jsonable(sample)
    # health events are "since the last reading": keep the first reading's too
    document["health_events"] = to_jsonable(first.health_events + sample.health_events)
    document = {"node_id": reader.node_id, "node_name": reader.node_name, **document}
    print_json(document)
    return 0
