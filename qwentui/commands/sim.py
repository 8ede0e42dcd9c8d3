"""`qwentui sim [SGLANG FLAGS] [--sim-* FLAGS]`: run the SGLang simulator in the foreground.

Everything after `sim` goes to `python -m qwentui.sim` unchanged (see `qwentui sim --help`).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="run the SGLang simulator (SIMULATED engine, no GPU, no model)",
                       description="Run qwentui's SGLang simulator: same flags as 'sglang serve' plus --sim-*.",
                       add_help=False, prefix_chars="\0")
    p.add_argument("sim_args", nargs=argparse.REMAINDER, help="flags for the simulator (see 'qwentui sim --help')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qwentui.sim.launch import main

    return main(list(args.sim_args))
