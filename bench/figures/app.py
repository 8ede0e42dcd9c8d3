"""The real `qwentui --demo` on a pseudo-terminal (80×24): first paint and idle cost.

First paint = spawn → the first bytes of the chat pane's welcome line on the terminal,
next to `python -c pass` and to the smallest Textual app (the floor qwentui builds on).
Idle = once the engine is ready and the screen settled: CPU time of the console process
alone (the simulator it launched is reported separately) and the bytes it writes to
the terminal per second, over a window of 10 s (quick) or 30 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from common import (Ctx, Figure, PtyProcess, app_env, free_port, median, qwentui_argv, wait_http,
                    wall_times)

MARKER = b"Ask Qwen"  # first words of the chat pane's welcome line
SETTLE_S = 1.5


def start_console(ctx: Ctx, port: int) -> PtyProcess:
    return PtyProcess(qwentui_argv() + ["--demo", "--port", str(port)], app_env(ctx.tmp / "xdg"))


def first_paint(pty: PtyProcess, timeout: float = 20.0) -> float:
    at = pty.wait_for(MARKER, timeout)
    if at is None:
        tail = pty.output()[-300:]
        raise RuntimeError(f"no first paint after {timeout:.0f}s (exit {pty.proc.poll()}); last output {tail!r}")
    return at - pty.started


def close(pty: PtyProcess) -> None:
    """SIGKILL the engine the console started, then the console (its shutdown is not measured)."""
    try:
        tree = psutil.Process(pty.proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for proc in tree:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(tree, timeout=5)
    pty.close(kill=True)


def paint_only(ctx: Ctx, argv: list[str] | None = None) -> float:
    pty = PtyProcess(argv, app_env(ctx.tmp / "xdg")) if argv else start_console(ctx, free_port())
    try:
        return first_paint(pty)
    finally:
        close(pty)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def idle_session(ctx: Ctx, window: float) -> dict:
    port = free_port()
    pty = start_console(ctx, port)
    try:
        paint = first_paint(pty)
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=60, proc=pty.proc)
        time.sleep(SETTLE_S)
        console = psutil.Process(pty.proc.pid)
        engine = console.children(recursive=True)
        c0, e0, t0 = cpu_seconds([console]), cpu_seconds(engine), time.perf_counter()
        time.sleep(window)
        c1, e1, t1 = cpu_seconds([console]), cpu_seconds(engine), time.perf_counter()
        return {"paint": paint, "cpu": 100 * (c1 - c0) / (t1 - t0), "engine_cpu": 100 * (e1 - e0) / (t1 - t0),
                "bytes": pty.bytes_between(t0, t1) / (t1 - t0), "window": t1 - t0, "engine_pids": len(engine)}
    finally:
        close(pty)


def run(ctx: Ctx) -> list[Figure]:
    window = ctx.pick(10.0, 30.0)
    idle = idle_session(ctx, window)
    paints = [idle["paint"]] + [paint_only(ctx) for _ in range(ctx.pick(2, 4))]
    minimal = [paint_only(ctx, [sys.executable, str(Path(__file__).resolve().parent.parent / "minimal_app.py")])
               for _ in range(ctx.pick(1, 3))]
    python = median(wall_times([sys.executable, "-c", "pass"], ctx.pick(3, 5)))
    paint = median(paints)
    return [
        Figure("app.first_paint", paint, "s", 1.0, "<=",
               f"median of {len(paints)}: spawn → chat pane on the pty; "
               f"{paint / python:.0f}x python -c pass, {paint / median(minimal):.1f}x minimal Textual app"),
        Figure("app.first_paint_textual", median(minimal), "s", note="smallest Textual app, same pty (baseline)"),
        Figure("app.first_paint_python", python, "s", note="python -c pass (baseline)"),
        Figure("app.idle_cpu", idle["cpu"], "%", 2.0, "<=",
               f"console process alone, % of one core over {idle['window']:.0f}s after ready + {SETTLE_S:g}s"),
        Figure("app.idle_term_bytes", idle["bytes"], "B/s", 2048, "<=",
               f"bytes written to the 80x24 pty over the same {idle['window']:.0f}s"),
        Figure("app.idle_engine_cpu", idle["engine_cpu"], "%",
               note=f"the simulator it launched ({idle['engine_pids']} processes), for reference"),
    ]
