"""The console on a real guard: panes, header, idle warning keys, restart.

A detached guard running the simulator (`qwentui --demo`) with a short idle timeout."""

from __future__ import annotations

import psutil

from qwentui import cli
from qwentui.cost.ledger import Ledger, path_for
from qwentui.engine.status import EngineState
from qwentui.runtime.client import GuardClient
from qwentui.ui.widgets.cost import CostPane
from qwentui.ui.widgets.gpu import GpuPane
from qwentui.ui.dialogs.idle import IdleWarning
from tests.guardproc import console_on_a_guard
from tests.waits import wait_until


async def _demo(monkeypatch, port: int, timeout: str = "4s", warn: str = "2s"):
    monkeypatch.setenv("QWENTUI_ENGINE_EXTRA_ARGS", '["--sim-cold-start", "0.2s", "--sim-tokens-per-s", "3000"]')
    monkeypatch.setenv("QWENTUI_ENGINE_PORT", str(port))
    monkeypatch.setenv("QWENTUI_ENGINE_STOP_GRACE", "2s")
    monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", timeout)
    monkeypatch.setenv("QWENTUI_IDLE_WARN_BEFORE", warn)
    monkeypatch.setenv("QWENTUI_COST_PRICE_PER_HOUR", "3.6")
    app = await console_on_a_guard(cli.build_parser().parse_args(["--demo"]))
    sup = app.supervisor
    bells: list[int] = []
    app.bell = lambda: bells.append(1)
    return app, sup, bells


def _header(app) -> str:
    return str(app.header.render())


async def _chat(pilot, app, text: str) -> None:
    app.chat.prompt.insert(text)
    await pilot.press("enter")
    n = len(app.chat.conversation.turns)
    await wait_until(pilot, lambda: len(app.chat.conversation.turns) == n and not app.chat.streaming
                     and app.chat.conversation.turns[-1].status == "done", timeout=15)


async def test_panes_header_warning_snooze_stop_now_and_restart_keep_the_chat(monkeypatch, port):
    app, sup, bells = await _demo(monkeypatch, port)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: sup.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        await _chat(pilot, app, "hello")
        await wait_until(pilot, lambda: app.query_one("#gpu", GpuPane).snapshot is not None
                         and app.query_one("#cost", CostPane).snapshot is not None, timeout=5)
        await wait_until(pilot, lambda: "¥3.6/h · session" in _header(app) and "stop in" in _header(app))
        assert GuardClient(kind="sim").state()["snapshot"]["cost"]["session_id"] is not None  # the guard's row
        await wait_until(pilot, lambda: isinstance(app.screen, IdleWarning), timeout=10)
        assert bells == [1] and "idle stop in" in _header(app)
        await pilot.press("s")  # snooze
        await wait_until(pilot, lambda: "snoozed" in _header(app))
        assert not isinstance(app.screen, IdleWarning) and sup.status.state is EngineState.READY
        await wait_until(pilot, lambda: isinstance(app.screen, IdleWarning), timeout=10)
        await pilot.press("x")  # stop now
        await wait_until(pilot, lambda: sup.status.state is EngineState.STOPPED, timeout=15)
        assert sup.status.stop_reason == "idle"
        await wait_until(pilot, lambda: "press F5 to restart" in app.chat.blocked)
        await wait_until(pilot, lambda: "stopped (idle)" in _header(app))  # the guard's next snapshot
        assert app.chat.prompt.disabled
        await pilot.press("f5")
        await wait_until(pilot, lambda: sup.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert [t.content for t in app.chat.conversation.turns][0] == "hello"  # the chat stays
        await _chat(pilot, app, "again")
        assert len(app.chat.conversation.turns) == 4
        guard = app.runtime.guard_pid
        await app.runtime.stop_guard()
        await wait_until(pilot, lambda: not psutil.pid_exists(guard) or
                         psutil.Process(guard).status() == psutil.STATUS_ZOMBIE, timeout=20)
        await app.runtime.close("user")
    with Ledger(path_for("sim"), read_only=True) as ledger:
        assert [r.stop_reason for r in ledger.sessions()] == ["idle", "user"]


async def test_escape_keeps_counting_then_it_stops_itself_and_disable_after_restart(monkeypatch, port):
    app, sup, bells = await _demo(monkeypatch, port, timeout="3s", warn="2s")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, IdleWarning), timeout=30)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, IdleWarning) and sup.status.state is EngineState.READY
        await wait_until(pilot, lambda: sup.status.state is EngineState.STOPPED, timeout=15)
        assert sup.status.stop_reason == "idle"
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, IdleWarning), timeout=30)
        await pilot.press("d")  # disable
        await wait_until(pilot, lambda: "idle stop off" in _header(app))
        await pilot.pause(1.5)
        assert sup.status.state is EngineState.READY and len(bells) == 2
        await app.runtime.close("user")
