"""One module per `aios-agent` subcommand; each exposes `register(subparsers, common)`."""
