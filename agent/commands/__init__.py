"""The `aios-agent` subcommands, one module each; each exposes `register(subparsers)` and sets `run` (see agent/cli.py)."""
