"""One module per `qwentui` subcommand; each exposes register(subparsers)."""
