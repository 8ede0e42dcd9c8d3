"""The console with an engine: the real supervisor + simulator (`qwentui --demo`),
`--attach`, the explicit quit choice, and the engine-state wiring."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest

from qwentui import cli
from qwentui.commands import console
from qwentui.config import Config
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.errors import QwentuiError, UsageError
from qwentui.ui.app import make_app
from qwentui.ui.dialogs.quit import QuitDialog
from qwentui.ui.widgets.header import blocked_reason
from tests.chatfakes import ScriptedServer
from tests.guardproc import console_on_a_guard
from tests.simproc import running_sim
from tests.test_ui_chat import READY
from tests.waits import wait_until


def _args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def _fast_sim_config(monkeypatch, port: int) -> None:
    monkeypatch.setenv("QWENTUI_ENGINE_EXTRA_ARGS", '["--sim-cold-start", "0.3s", "--sim-tokens-per-s", "2000"]')
    monkeypatch.setenv("QWENTUI_ENGINE_PORT", str(port))
    monkeypatch.setenv("QWENTUI_ENGINE_STOP_GRACE", "3s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_demo_starts_a_guard_chats_and_quit_stops_engine_and_guard(monkeypatch, port):
    _fast_sim_config(monkeypatch, port)
    app = await console.build(_args("--demo"))  # no guard yet: it paints, then attaches to a new one
    assert app.runtime is None
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.runtime is not None, timeout=30)
        supervisor, guard = app.supervisor, app.runtime.guard_pid
        await wait_until(pilot, lambda: supervisor.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        header = str(app.header.render())
        assert "SIMULATED" in header and "READY" in header and "session" in header  # 100 columns: no URL
        assert app.client_endpoint()[0] == supervisor.base_url  # F7 shows it
        app.chat.prompt.insert("hello")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming, timeout=15)
        answer = app.chat.conversation.turns[1]
        assert answer.status == "done" and answer.content.strip().startswith("(simulated)")
        assert answer.reasoning and answer.usage.reasoning_tokens > 0
        pid = supervisor.status.pid
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        assert "idle stop armed (stops in" in str(app.screen.query_one("#keep-note").render())
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.is_running, timeout=15)
    await app.runtime.close()
    deadline = asyncio.get_running_loop().time() + 20
    while (_alive(pid) or _alive(guard)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert not _alive(pid) and not _alive(guard)


async def test_quit_dialog_cancel_keeps_the_app(monkeypatch, port):
    _fast_sim_config(monkeypatch, port)
    app = await console_on_a_guard(_args("--demo"))
    supervisor = app.supervisor
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: supervisor.status.state is EngineState.READY, timeout=30)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, QuitDialog)
        assert supervisor.status.state is EngineState.READY
        await supervisor.stop("user")
        await wait_until(pilot, lambda: "stopped" in str(app.chat.query_one("#blocked").render()), timeout=15)
        assert app.chat.prompt.disabled
    await app.runtime.close()


async def test_attach_chats_with_a_running_server_and_never_stops_it():
    with running_sim() as sim:
        app = await console.build(_args("--attach", sim.base_url + "/v1"))
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: "ATTACHED" in str(app.header.render()), timeout=15)
            assert "SIMULATED" in str(app.header.render())  # the attached server is our simulator
            app.chat.prompt.insert("hi")
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming, timeout=15)
            assert app.chat.conversation.turns[1].status == "done"
            await pilot.press("ctrl+q")  # attached: no question, the server is not ours
            await pilot.pause()
        assert sim.proc.poll() is None


async def test_attach_unreachable_shows_why_and_keeps_running(port):
    app = await console.build(_args("--attach", f"http://127.0.0.1:{port}"))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: "cannot reach" in str(app.chat.query_one("#blocked").render()),
                         timeout=15)
        assert app.chat.prompt.disabled and app.is_running


def test_bad_attach_url_is_a_usage_error():
    with pytest.raises(UsageError, match="--attach needs an http"):
        asyncio.run(console.build(_args("--attach", "ftp://example")))
    assert cli.main(["--attach", "not a url"]) == 2


class FakeSupervisor:
    """The supervisor surface the app uses (status, start, stop)."""

    def __init__(self, status: EngineStatus) -> None:
        self.status = status
        self.base_url, self.api_key, self.served_model = status.base_url, "", status.model
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")
        self.status = dataclasses.replace(self.status, state=EngineState.STARTING, phase="loading weights")
        await asyncio.sleep(0.05)
        self.status = dataclasses.replace(self.status, state=EngineState.READY, phase="ready")

    async def stop(self, reason: str = "user") -> None:
        self.calls.append(f"stop:{reason}")
        self.status = dataclasses.replace(self.status, state=EngineState.STOPPED, stop_reason=reason)


async def test_autostart_from_stopped_and_quit_without_a_guard_asks_nothing():
    stopped = dataclasses.replace(READY, state=EngineState.STOPPED, phase="")
    sup = FakeSupervisor(stopped)
    app = make_app(Config(), supervisor=sup, client=ScriptedServer().client())
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert sup.calls == ["start"]
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running
    assert sup.calls == ["start"]


async def test_no_autostart_leaves_engine_stopped_and_palette_starts_it():
    cfg = Config()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, autostart=False))
    stopped = dataclasses.replace(READY, state=EngineState.STOPPED, phase="", stop_reason="idle")
    sup = FakeSupervisor(stopped)
    app = make_app(cfg, supervisor=sup, client=ScriptedServer().client())
    async with app.run_test() as pilot:
        await pilot.pause(0.3)
        assert sup.calls == [] and app.chat.prompt.disabled
        assert "engine stopped (idle)" in str(app.chat.query_one("#blocked").render())
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        titles["Start engine"].callback()
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert sup.calls == ["start"]


def test_blocked_reasons_are_readable():
    assert blocked_reason(READY) == "" and blocked_reason(None) == ""
    crashed = dataclasses.replace(READY, state=EngineState.CRASHED, error="CUDA out of memory",
                                  hint="lower engine.overrides --mem-fraction-static")
    assert blocked_reason(crashed) == ("engine crashed: CUDA out of memory — lower engine.overrides "
                                       "--mem-fraction-static")
    stopping = dataclasses.replace(READY, state=EngineState.STOPPING)
    assert blocked_reason(stopping) == "engine stopping…"


async def test_the_guards_engine_outlives_the_console_however_it_ends(monkeypatch, port):
    """E.g. the terminal closes (SIGHUP) and the app exits without the quit dialog."""
    _fast_sim_config(monkeypatch, port)
    args = _args("--demo")
    pids = []

    async def run_headless(self):
        async with self.run_test() as pilot:
            await wait_until(pilot, lambda: self.supervisor is not None
                             and self.supervisor.status.state is EngineState.READY, timeout=30)
            pids.append(self.supervisor.status.pid)
            _on_signal(self)

    from qwentui.commands.console import _on_signal
    from qwentui.ui.app import QwentuiApp

    monkeypatch.setattr(QwentuiApp, "run_async", run_headless)
    monkeypatch.setattr("qwentui.ui.shutdown.arm_exit_deadline", lambda *a, **k: None)
    app = await console._run(args)
    assert app.exit_reason == "signal" and _alive(pids[0])
    from qwentui.runtime.client import GuardClient

    state = GuardClient(kind="sim").state()
    assert state["engine"]["state"] == "ready" and state["engine"]["pid"] == pids[0]
