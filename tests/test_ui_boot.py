"""The start-up / crash panel, the responsive header and the snooze key (F10).

Pilot tests with fixed engine snapshots and a settable clock, one against the real
supervisor + simulator crashing during start-up, and snapshots at 80×24.
"""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console
from rich.text import Text

from qwentui.config import Config
from qwentui.engine import Supervisor
from qwentui.engine.status import EngineState
from qwentui.idle.watchdog import IdleState
from qwentui.runtime.core import Runtime
from qwentui.ui.app import make_app
from qwentui.ui.screens.help import HelpScreen, app_rows
from qwentui.ui.widgets.boot import BootPanel
from tests.test_engine_supervisor import sim_cfg
from tests.test_runtime import FakeSupervisor
from tests.test_ui_chat import READY
from tests.waits import wait_until

STARTING = dataclasses.replace(READY, state=EngineState.STARTING, phase="allocating KV cache", started_at=500.0)
TAIL = tuple(f"[2026-01-01 00:00:{i:02d}] INFO: line {i}" for i in range(10)) + (
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "=== qwentui: engine exited with code 1 while capturing CUDA graphs")
CRASHED = dataclasses.replace(
    READY, state=EngineState.CRASHED, phase="capturing CUDA graphs", stop_reason="crash", exit_code=1,
    error="engine exited with code 1 while capturing CUDA graphs", started_at=500.0,
    hint="try --disable-cuda-graph or a smaller --cuda-graph-max-bs", log_tail=TAIL)
RUNTIME_FIELD = "idle 12:30 — stop in 17:30  ¥2.5/h · session ¥0.42"


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _text(widget) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.render())
    return console.export_text()


def _app(status, clock=None, **kw):
    return make_app(Config(), status=status, clock=clock or Clock(), **kw)


async def test_starting_shows_phases_progress_and_elapsed_time_that_ticks_only_while_starting():
    clock = Clock()
    app = _app(STARTING, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        boot = app.query_one(BootPanel)
        assert boot.display and boot.ticking
        assert not app.query_one("#welcome").display and not app.query_one("#blocked").display
        assert app.chat.prompt.disabled
        text = _text(boot)
        assert "Starting the engine · Qwen/Qwen3-1.7B" in text and "SIMULATED" in text
        assert "✓ launching" in text and "✓ loading weights" in text
        assert "◐ allocating KV cache…" in text  # the spinner marks the current phase
        assert "· capturing CUDA graphs" in text and "· warming up" in text and "· ready" in text
        assert "2/5" in text and "0:00 elapsed" in text
        order = [text.index(name) for name in ("launching", "loading weights", "allocating KV cache",
                                               "capturing CUDA graphs", "warming up", "ready\n")]
        assert order == sorted(order)
        clock.now += 83
        await pilot.pause(1.2)  # the 1 s timer repaints
        assert "1:23 elapsed" in _text(boot) and "◒ allocating KV cache" in _text(boot)
        app.engine_status = dataclasses.replace(STARTING, phase="warming up")
        await pilot.pause()
        text = _text(boot)
        assert "✓ capturing CUDA graphs" in text and "warming up…" in text and "4/5" in text
        assert "1:23 elapsed" in text  # the same start: the clock is not reset


async def test_hidden_when_ready_and_nothing_ticks():
    clock = Clock()
    app = _app(STARTING, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        clock.now += 7
        app.engine_status = READY
        await pilot.pause()
        boot = app.query_one(BootPanel)
        assert not boot.display and not boot.ticking
        assert app.query_one("#welcome").display and not app.chat.prompt.disabled
        assert boot.elapsed() == 7  # start-up took 7 s; frozen
        clock.now += 100
        assert boot.elapsed() == 7
        app.engine_status = dataclasses.replace(STARTING, started_at=900.0)  # a new start: timed afresh
        await pilot.pause()
        assert boot.display and boot.ticking and boot.elapsed() == 0


async def test_crashed_shows_error_hint_last_log_lines_and_keys():
    clock = Clock()
    app = _app(STARTING, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        clock.now += 65
        app.engine_status = CRASHED
        await pilot.pause()
        boot = app.query_one(BootPanel)
        assert boot.display and not boot.ticking and boot.has_class("-crashed")
        assert boot.border_title == "Engine crashed"
        text = _text(boot)
        assert "✖ Engine crashed after 1:05" in text and "SIMULATED" in text
        assert "engine exited with code 1 while capturing CUDA graphs" in text
        assert "hint: try --disable-cuda-graph" in text
        assert "line 1\n" not in text and "line 2\n" not in text  # only the last 8 lines
        for i in range(3, 10):
            assert f"INFO: line {i}" in text
        assert "RuntimeError: CUDA error" in text
        assert "=== qwentui: engine exited" not in text  # not the error a second time
        assert "F5 restart" in text and "F6 full log" in text
        assert not app.query_one("#blocked").display and app.chat.prompt.disabled


async def test_other_states_hide_the_panel():
    stopped = dataclasses.replace(READY, state=EngineState.STOPPED, phase="", stop_reason="user")
    for status in (None, stopped, dataclasses.replace(stopped, state=EngineState.STOPPING)):
        app = _app(status)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert not app.query_one(BootPanel).display


async def test_attached_start_says_connecting_not_phases():
    attached = dataclasses.replace(STARTING, phase="launching", attached=True, simulated=False, kind="sglang")
    app = _app(attached)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = _text(app.query_one(BootPanel))
        assert "connecting to http://127.0.0.1:30000" in text and "loading weights" not in text
        assert "SIMULATED" not in text


class CrashedSupervisor(FakeSupervisor):
    """Starts crashed; start() boots it to READY."""

    def __init__(self) -> None:
        super().__init__()
        self.status = dataclasses.replace(CRASHED, model="m", base_url=self.base_url)

    async def start(self) -> None:
        self.starts += 1
        self._set(state=EngineState.STARTING, phase="launching", started_at=600.0, error=None, hint=None)
        self._set(state=EngineState.READY, phase="ready")


async def _no_metrics():
    return None


async def test_f5_restarts_from_crashed_and_the_panel_goes():
    sup = CrashedSupervisor()
    cfg = Config()
    runtime = Runtime(cfg, sup, scrape=_no_metrics)
    app = make_app(cfg, supervisor=sup, runtime=runtime, clock=Clock())
    async with app.run_test(size=(80, 24)) as pilot:
        boot = app.query_one(BootPanel)
        await wait_until(pilot, lambda: boot.display and boot.has_class("-crashed"))
        await pilot.press("f5")
        await wait_until(pilot, lambda: sup.starts == 1 and not boot.display)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert app.query_one("#welcome").display and not boot.ticking
        await runtime.close("user")


async def test_real_simulator_crash_during_start_up_fills_the_panel(port):
    cfg = sim_cfg(port, {"--sim-cold-start": "3s", "--sim-crash-after": "0.5s"})
    sup = Supervisor(cfg)
    app = make_app(cfg, supervisor=sup)
    async with app.run_test(size=(80, 24)) as pilot:
        boot = app.query_one(BootPanel)
        await wait_until(pilot, lambda: boot.display and "launching" in _text(boot), timeout=10)
        await wait_until(pilot, lambda: sup.status.state is EngineState.CRASHED, timeout=15)
        await wait_until(pilot, lambda: boot.has_class("-crashed"))
        text = _text(boot)
        assert "✖ Engine crashed after" in text and "while " in text and "hint: " in text
        assert "CUDA error: an illegal memory access" in text and "F5 restart" in text
        assert not boot.ticking


# ---------------------------------------------------------------------------- header


def _header(app) -> str:
    return app.header.render().plain


async def test_header_at_80_columns_keeps_state_badge_idle_and_cost_and_drops_url_then_model():
    app = _app(READY)
    async with app.run_test(size=(80, 24)) as pilot:
        app.header.set_field("runtime", Text(RUNTIME_FIELD))
        await pilot.pause()
        line = _header(app)
        assert len(line) <= 80 and line.rstrip().endswith("session ¥0.42")
        assert "SIMULATED" in line and "● READY" in line and "idle 12:30 — stop in 17:30" in line
        assert "http://" not in line and "Qwen/Qwen3-1.7B" not in line
        assert "│" not in line  # no stray separator
        app.header.set_field("runtime", "¥2.5/h · session ¥0.42")  # more room: the model comes back
        await pilot.pause()
        line = _header(app)
        assert "Qwen/Qwen3-1.7B" in line and "http://" not in line and line.rstrip().endswith("¥0.42")
        app.engine_status = dataclasses.replace(STARTING, phase="capturing CUDA graphs")
        await pilot.pause()
        assert "◐ STARTING capturing CUDA graphs" in _header(app) and "¥0.42" in _header(app)


async def test_header_at_120_columns_keeps_the_model_and_at_160_the_url_too():
    for width, url in ((120, False), (160, True)):
        app = _app(READY)
        async with app.run_test(size=(width, 40)) as pilot:
            app.header.set_field("runtime", Text(RUNTIME_FIELD))
            await pilot.pause()
            line = _header(app)
            assert len(line) <= width and line.startswith(" qwentui   SIMULATED  ● READY  │  Qwen/Qwen3-1.7B")
            assert ("http://127.0.0.1:30000" in line) is url
            assert "idle 12:30 — stop in 17:30" in line and line.rstrip().endswith("session ¥0.42")


async def test_header_without_fields_never_ends_with_a_separator():
    for width in (80, 100, 200):
        app = _app(READY)
        async with app.run_test(size=(width, 24)) as pilot:
            await pilot.pause()
            line = _header(app).rstrip()
            assert not line.endswith("│") and len(line) < width


# ---------------------------------------------------------------------------- snooze key


async def test_f10_snoozes_and_is_in_help_and_palette_once():
    cfg = Config()
    sup = FakeSupervisor()
    runtime = Runtime(cfg, sup, scrape=_no_metrics)
    app = make_app(cfg, supervisor=sup, runtime=runtime)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: runtime.latest is not None)
        await pilot.press("f10")
        await wait_until(pilot, lambda: runtime.latest.idle.state is IdleState.SNOOZED)
        assert "snoozed — stop in" in _header(app)
        rows = {bid: (keys, what) for keys, what, bid in app_rows(app)}
        assert rows["snooze-idle"][0] == "F10" and "Snooze" in rows["snooze-idle"][1]
        titles = [cmd.title for cmd in app.get_system_commands(app.screen)]
        assert titles.count("Snooze idle stop") == 1 and titles.count("Restart engine") == 1
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await runtime.close("user")


async def test_f10_without_a_watchdog_says_so():
    app = _app(READY)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f10")
        await pilot.pause()
        assert any("Nothing to snooze" in n.message for n in app._notifications)


# ---------------------------------------------------------------------------- snapshots


def _steady(clock: Clock | None = None, advance: float = 0.0, status=None):
    async def run_before(pilot) -> None:
        app = pilot.app
        app.chat.prompt.cursor_blink = False
        app.header.set_field("runtime", "¥2.5/h · session ¥0.04")
        if status is not None:
            app.engine_status = status
        if clock is not None:
            clock.now += advance
        app.query_one(BootPanel).refresh()
        await pilot.pause(0.2)

    return run_before


def test_snapshot_starting_80x24(snap_compare):
    """You should see the header "SIMULATED ◐ STARTING capturing CUDA graphs … ¥2.5/h · session ¥0.04"
    and, above the disabled prompt, a yellow-bordered "Engine start-up" box: "Starting the engine ·
    Qwen/Qwen3-1.7B SIMULATED", ✓ launching, ✓ loading weights, ✓ allocating KV cache, "◒ capturing CUDA
    graphs…" in bold, dim "· warming up" and "· ready", a bar 3/5 filled green and "1:23 elapsed", then
    "the chat opens when it is ready · F6 engine log". No welcome text, no separate warning line."""
    clock = Clock()
    status = dataclasses.replace(STARTING, phase="capturing CUDA graphs")
    assert snap_compare(_app(status, clock), terminal_size=(80, 24), run_before=_steady(clock, 83))


def test_snapshot_crashed_80x24(snap_compare):
    """You should see "✖ CRASHED" in the header and a red-bordered "Engine crashed" box: "✖ Engine crashed
    after 0:42 · Qwen/Qwen3-1.7B SIMULATED", the red error "engine exited with code 1 while capturing
    CUDA graphs", "hint: try --disable-cuda-graph or a smaller --cuda-graph-max-bs", "last log lines:"
    with lines 3–9 and the RuntimeError line (not the "=== qwentui" line), then "F5 restart · F6 full log"."""
    clock = Clock()

    async def run_before(pilot) -> None:
        clock.now += 42
        await _steady(status=CRASHED)(pilot)

    assert snap_compare(_app(STARTING, clock), terminal_size=(80, 24), run_before=run_before)
