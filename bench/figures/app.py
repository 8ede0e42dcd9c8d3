"""The real `qwentui --demo` on a pseudo-terminal: first paint and idle cost.

First paint = spawn → the first bytes of the chat pane's welcome line on the terminal
(80×24, and the 120×40 idle run's), next to `python -c pass` and to the smallest Textual app (the floor qwentui
builds on). Idle = once the engine is ready and the screen settled: CPU time of the
console process alone (the simulator it launched is reported separately) and the bytes
it writes to the terminal per second, over a window of 8 s (quick) or 30 s, at each of
SIZES: 80×24 (GPU and cost panes are hidden tabs) and 120×40 (both panes on screen).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import (Ctx, Figure, PtyProcess, app_env, free_port, median, qwentui_argv, wait_http,
                    wall_times)

MARKER = b"Ask Qwen"  # first words of the chat pane's welcome line
SETTLE_S = 1.5
SIZES = ((80, 24), (120, 40))  # the first is the one the plain figure names refer to


def start_console(ctx: Ctx, port: int, size: tuple[int, int] = SIZES[0]) -> PtyProcess:
    cols, rows = size
    return PtyProcess(qwentui_argv() + ["--demo", "--port", str(port)], app_env(ctx.tmp / "xdg"),
                      cols=cols, rows=rows)


def first_paint(pty: PtyProcess, timeout: float = 20.0) -> float:
    at = pty.wait_for(MARKER, timeout)
    if at is None:
        tail = pty.output()[-300:]
        raise RuntimeError(f"no first paint after {timeout:.0f}s (exit {pty.proc.poll()}); last output {tail!r}")
    return at - pty.started


def close(pty: PtyProcess, ctx: Ctx | None = None) -> None:
    """SIGKILL the console (its shutdown is not measured), then stop the guard it started
    (with its engine): the guard is no child of the console and would outlive it."""
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
    if ctx is not None:
        subprocess.run(qwentui_argv() + ["stop", "--demo"], env=app_env(ctx.tmp / "xdg"), timeout=120,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def paint_only(ctx: Ctx, argv: list[str] | None = None) -> float:
    pty = PtyProcess(argv, app_env(ctx.tmp / "xdg")) if argv else start_console(ctx, free_port())
    try:
        return first_paint(pty)
    finally:
        close(pty, ctx)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def idle_session(ctx: Ctx, window: float, size: tuple[int, int] = SIZES[0]) -> dict:
    port = free_port()
    pty = start_console(ctx, port, size)
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
        close(pty, ctx)


def compile_bytecode() -> None:
    """Bytecode for qwentui's modules, as an installed wheel has. With PYTHONDONTWRITEBYTECODE
    set (as on these shared boxes) an editable checkout would otherwise compile ~100 modules
    from source on every start, while Textual (site-packages) is compiled at install."""
    import compileall

    import qwentui

    compileall.compile_dir(str(Path(qwentui.__file__).parent), quiet=1)


def run(ctx: Ctx) -> list[Figure]:
    compile_bytecode()
    window = ctx.pick(8.0, 30.0)  # two sizes: 8 s each keeps --quick under a minute
    idles = [idle_session(ctx, window, size) for size in SIZES]
    minimal_argv = [sys.executable, str(Path(__file__).resolve().parent.parent / "minimal_app.py")]
    paints = [idle["paint"] for idle in idles]
    minimal, ratios = [], []
    for _ in range(ctx.pick(2, 4)):  # back to back, so both see the same load on a shared box
        ours, floor = paint_only(ctx), paint_only(ctx, minimal_argv)
        paints.append(ours)
        minimal.append(floor)
        ratios.append(ours / floor)
    python = median(wall_times([sys.executable, "-c", "pass"], ctx.pick(3, 5)))
    paint = median(paints)
    figures = [
        Figure("app.first_paint", paint, "s", 1.0, "<=",
               f"median of {len(paints)} (80x24, one at 120x40): spawn → chat pane on the pty; "
               f"{paint / python:.0f}x python -c pass, {paint / median(minimal):.1f}x minimal Textual app"),
        Figure("app.first_paint_vs_textual", median(ratios), "x", 2.0, "<=",
               f"median of {len(ratios)} pairs run back to back: qwentui --demo / the smallest Textual app"),
        Figure("app.first_paint_textual", median(minimal), "s", note="smallest Textual app, same pty (baseline)"),
        Figure("app.first_paint_python", python, "s", note="python -c pass (baseline)"),
    ]
    for (cols, rows), idle in zip(SIZES, idles):
        tag = "" if (cols, rows) == SIZES[0] else f"_{cols}x{rows}"
        panes = "side panes hidden" if cols < 110 else "GPU + cost panes shown"
        figures += [
            Figure(f"app.idle_cpu{tag}", idle["cpu"], "%", 2.0, "<=",
                   f"{cols}x{rows} ({panes}): console process alone, % of one core over "
                   f"{idle['window']:.0f}s after ready + {SETTLE_S:g}s"),
            Figure(f"app.idle_term_bytes{tag}", idle["bytes"], "B/s", 2048, "<=",
                   f"bytes written to the {cols}x{rows} pty over the same {idle['window']:.0f}s"),
        ]
    figures.append(Figure("app.idle_engine_cpu", idles[0]["engine_cpu"], "%",
                          note=f"the simulator it launched ({idles[0]['engine_pids']} processes), for reference"))
    return figures
