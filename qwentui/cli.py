"""The `qwentui` command line: argparse, one module per subcommand, errors as one line.

Heavy libraries (Textual, httpx, pynvml) are imported inside the subcommands so that
`qwentui --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from qwentui import __version__
from qwentui.commands.flags import add_engine_flags, load_config  # noqa: F401 - re-exported
from qwentui.errors import QwentuiError

# Subcommand modules under qwentui.commands; each has register(subparsers).
# A command is listed here only once it is built.
COMMANDS: tuple[str, ...] = (
    "config",
    "engine",
    "serve",
    "status",
    "stop",
    "snooze",
    "doctor",
    "report",
    "cost",
    "sim",
    "batch",
    "gpu",
    "fleet",
)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    parser = Parser(
        prog="qwentui",
        description="Terminal operator console for Qwen3 on an hourly-billed GPU box: "
        "runs SGLang, chats, watches the GPU and the bill, stops what nobody uses.",
    )
    parser.add_argument("--version", action="version", version=f"qwentui {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: the XDG config dir's config.toml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    add_engine_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"qwentui.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("QWENTUI_DEBUG"))
    try:
        if args.command is None:
            from qwentui.commands import console

            return console.run(args)
        return int(args.func(args) or 0)
    except QwentuiError as exc:
        if debug:
            raise
        print(f"qwentui: error: {exc.message}", file=sys.stderr)
        if exc.hint and exc.exit_code != 2:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            raise
        print(f"qwentui: error: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
