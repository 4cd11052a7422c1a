"""The `aios-aggregator` subcommands, one module each: `register(subparsers)` sets `run` (see aggregator/cli.py)."""
