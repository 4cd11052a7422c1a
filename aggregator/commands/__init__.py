"""The `aios-aggregator` subcommands, one module each; each exposes `register(subparsers)`."""
