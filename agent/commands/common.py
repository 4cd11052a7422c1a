"""What the reading subcommands share: flags, the reader they open, JSON output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, TextIO

from agent.kube.identity import local_node_identity
from agent.sampling.node_reader import NodeReader, open_node_reader

__all__ = [
    "LOG_LEVELS",
    "common_parser",
    "interval_seconds",
    "log_level",
    "open_reader_from_args",
    "port_number",
    "print_json",
    "to_jsonable",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def interval_seconds(text: str) -> float:
    """argparse type: seconds between readings, 0 < s <= 3600."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 3600 seconds, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from e
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


def common_parser() -> argparse.ArgumentParser:
    """Flags every subcommand takes; defaults from the AIOS_ environment."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--host-root",
        default=os.environ.get("AIOS_HOST_ROOT", "/"),
        help="where the host's /proc and /sys are mounted (env AIOS_HOST_ROOT, default /)",
    )
    common.add_argument(
        "--nvml-library",
        default=os.environ.get("AIOS_NVML_LIBRARY") or None,
        help="path of libnvidia-ml.so.1 (env AIOS_NVML_LIBRARY; default: the loader's search path)",
    )
    common.add_argument(
        "--log-level",
        default=None,  # see log_level(): the default depends on the subcommand
        choices=LOG_LEVELS,
        type=str.upper,
        help="logging level, to stderr (env AIOS_LOG_LEVEL; default WARNING, INFO for `run`)",
    )
    return common


def log_level(args: argparse.Namespace, env=os.environ) -> str:
    """`--log-level`, else AIOS_LOG_LEVEL, else the subcommand's default: a daemon (`run`) says
    INFO what it found and does; the one-shot commands print JSON and log only problems."""
    if args.log_level:
        return args.log_level
    from_env = env.get("AIOS_LOG_LEVEL", "").strip().upper()
    if from_env and from_env not in LOG_LEVELS:
        raise SystemExit(f"aios-agent: AIOS_LOG_LEVEL={from_env!r} is not one of {', '.join(LOG_LEVELS)}")
    return from_env or getattr(args, "default_log_level", "WARNING")


def open_reader_from_args(args: argparse.Namespace) -> NodeReader:
    identity = local_node_identity()
    return open_node_reader(
        node_id=identity.node_id,
        node_name=identity.node_name,
        host_root=args.host_root,
        nvml_library=args.nvml_library,
    )


def to_jsonable(value: Any) -> Any:
    """Dataclasses as dicts (tuples as lists), for printing."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(document: Any, out: TextIO = sys.stdout) -> None:
    json.dump(document, out, indent=2, sort_keys=False)
    out.write("\n")
