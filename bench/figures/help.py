"""`qwentui --help` wall time next to `python -c pass` (interpreter start-up, the floor)."""

from __future__ import annotations

import sys

from common import Ctx, Figure, median, qwentui_argv, wall_times


def run(ctx: Ctx) -> list[Figure]:
    runs = ctx.pick(5, 15)
    helps: list[float] = []
    passes: list[float] = []
    for _ in range(runs):  # interleaved, so a burst of load hits both
        helps += wall_times(qwentui_argv() + ["--help"], 1)
        passes += wall_times([sys.executable, "-c", "pass"], 1)
    h, p = median(helps), median(passes)
    return [
        Figure("help.wall", h, "s", 0.3, "<=", f"median of {runs}; {h / p:.1f}x python -c pass"),
        Figure("help.python_baseline", p, "s", note="python -c pass, same interpreter"),
    ]
