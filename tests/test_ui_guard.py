"""The console attached to a real guard: shared countdown, snooze from anywhere, the guard
dying under the console, consoles counted as activity."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from qwentui import cli
from qwentui.commands import console
from qwentui.engine.status import EngineState
from qwentui.runtime.client import AsyncGuardClient, GuardClient
from qwentui.runtime.link import GuardLink
from qwentui.ui.dialogs.confirm import ConfirmDialog
from tests.guardproc import console_on_a_guard, detached_guard, gone
from tests.waits import wait_until
from tests.test_ui_chat_engine import _fast_sim_config

pytestmark = pytest.mark.slow


def _args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def _fast(monkeypatch, port: int) -> None:
    _fast_sim_config(monkeypatch, port)


def _left(snap) -> float:
    return snap.idle.seconds_left if snap is not None and snap.idle.seconds_left is not None else -1.0


async def test_two_consoles_share_the_countdown_and_a_snooze_moves_both(monkeypatch, port):
    _fast(monkeypatch, port)
    with detached_guard(port, "--idle-timeout", "10m"):
        app = await console.build(_args("--demo"))
        other = await GuardLink.open(AsyncGuardClient(kind="sim"))
        follow = asyncio.ensure_future(other.run())
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_until(pilot, lambda: _left(app.runtime.latest) > 0 and _left(other.latest) > 0)
                assert abs(_left(app.runtime.latest) - _left(other.latest)) < 2.5  # one guard, one countdown
                await wait_until(pilot, lambda: "stop in" in str(app.header.render()))
                other.snooze(3600)  # the second console snoozes ...
                await wait_until(pilot, lambda: _left(app.runtime.latest) > 3600, timeout=5)  # ... both move
                await wait_until(pilot, lambda: "snoozed" in str(app.header.render()))
                assert _left(other.latest) > 3600
                await pilot.press("f10")  # and F10 in this one (by the 10m timeout) moves the other
                await wait_until(pilot, lambda: _left(other.latest) > 3600 + 600 - 30, timeout=5)
                state = GuardClient(kind="sim").state()
                assert state["guard"]["consoles"] == 2 and state["idle"]["seconds_left"] > 3600 + 600 - 30
            await app.runtime.close()
        finally:
            follow.cancel()
            await other.close()


async def test_the_guard_dies_under_the_console_which_keeps_the_chat_and_starts_a_new_one(monkeypatch, port):
    _fast(monkeypatch, port)
    app = await console_on_a_guard(_args("--demo"))
    first = app.runtime.guard_pid
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.supervisor.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        app.chat.prompt.insert("hello")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.chat.conversation.turns) == 2 and not app.chat.streaming, timeout=15)
        os.kill(first, signal.SIGKILL)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=10)
        assert app.chat.prompt.disabled and "guard" in str(app.chat.query_one("#blocked").render())
        await pilot.press("enter")  # "Start guard"
        await wait_until(pilot, lambda: app.runtime.guard_pid != first, timeout=30)
        await wait_until(pilot, lambda: app.supervisor.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert app.chat.conversation.turns[0].content == "hello"  # the chat stays
        app.chat.prompt.insert("again")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.chat.conversation.turns) == 4 and not app.chat.streaming,
                         timeout=15)
        assert app.chat.conversation.turns[-1].status == "done"
    await app.runtime.close()
    assert gone([first])


async def test_attached_consoles_count_as_activity_when_configured(monkeypatch, port):
    _fast(monkeypatch, port)
    monkeypatch.setenv("QWENTUI_IDLE_COUNT_CONSOLES", "true")
    with detached_guard(port, "--idle-timeout", "10m") as g:
        assert g.state()["idle"]["alive"] == ""
        link = await GuardLink.open(AsyncGuardClient(kind="sim"))
        follow = asyncio.ensure_future(link.run())
        try:
            for _ in range(50):
                if g.state()["idle"]["alive"] == "1 console attached":
                    break
                await asyncio.sleep(0.1)
            assert g.state()["idle"]["alive"] == "1 console attached"
        finally:
            follow.cancel()
            await link.close()
        for _ in range(50):
            if g.state()["idle"]["alive"] == "":
                break
            await asyncio.sleep(0.1)
        assert g.state()["idle"]["alive"] == "" and g.state()["guard"]["consoles"] == 0


async def test_quit_leave_running_then_status_counts_down_and_stop_ends_everything(monkeypatch, port):
    import json

    from tests.guardproc import qwentui

    _fast(monkeypatch, port)
    monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", "10m")
    app = await console_on_a_guard(_args("--demo"))
    guard = app.runtime.guard_pid
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.supervisor.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: _left(app.runtime.latest) > 0)
        engine = app.supervisor.status.pid
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("k")  # leave it running, idle stop armed
        await wait_until(pilot, lambda: not app.is_running, timeout=10)
    await app.runtime.close()
    assert "idle stop armed (stops in" in app.farewell
    first = json.loads((await asyncio.to_thread(qwentui, "status", "--json", "--demo")).stdout)["idle"]
    await asyncio.sleep(2.2)
    second = json.loads((await asyncio.to_thread(qwentui, "status", "--json", "--demo")).stdout)["idle"]
    assert second["seconds_left"] < first["seconds_left"] and second["state"] == "idle"
    stopped = await asyncio.to_thread(qwentui, "stop", "--demo")
    assert stopped.returncode == 0, stopped.stderr
    assert gone([guard, engine])
    assert _ours(port) == []  # nothing of ours left: no guard, no simulator, no scheduler


def _ours(port: int) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(proc.info["cmdline"] or [])
        if f"--port {port}" in line and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found
