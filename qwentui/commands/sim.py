"""`qwentui sim [SGLANG FLAGS] [--sim-* FLAGS]`: run the SGLang simulator in the foreground.

Everything after `sim` goes to `python -m qwentui.sim` unchanged (see `qwentui sim --help`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="run the SGLang simulator (SIMULATED engine, no GPU, no model)",
                       description="Run qwentui's SGLang simulator: same flags as 'sglang serve' plus --sim-*.",
                       add_help=False, prefix_chars="\0")
    p.add_argument("sim_args", nargs=argparse.REMAINDER, help="flags for the simulator (see 'qwentui sim --help')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qwentui.sim.launch import main

    problem = flag_error(list(args.sim_args))
    if problem is not None:
        print(f"qwentui sim: error: {problem} (see 'qwentui sim --help')", file=sys.stderr)
        return 2
    return main(list(args.sim_args))


def flag_error(argv: list[str]) -> str | None:
    """The simulator's argparse error as one line (it mimics `sglang serve`, whose errors
    come after a 49-line usage block); None when the flags parse."""
    from qwentui.sim import args as simargs

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            simargs.parse(argv)
    except SystemExit as exc:
        if exc.code:
            lines = [line for line in captured.getvalue().splitlines() if ": error: " in line]
            return lines[-1].split(": error: ", 1)[1] if lines else "bad flags"
        raise  # --help: already printed, exit 0
    return None
