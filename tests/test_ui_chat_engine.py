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


async def test_demo_starts_the_simulator_chats_and_quit_stops_it(monkeypatch, port):
    _fast_sim_config(monkeypatch, port)
    app, supervisor = console.build(_args("--demo"))
    async with app.run_test(size=(100, 30)) as pilot:
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
        assert app.screen.query_one("#keep").disabled  # started without --keep-engine
        await pilot.press("s")
        await wait_until(pilot, lambda: supervisor.status.state is EngineState.STOPPED, timeout=15)
    assert supervisor.status.stop_reason == "user" and not _alive(pid)


async def test_quit_dialog_cancel_keeps_the_app(monkeypatch, port):
    _fast_sim_config(monkeypatch, port)
    app, supervisor = console.build(_args("--demo"))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: supervisor.status.state is EngineState.READY, timeout=30)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, QuitDialog)
        assert supervisor.status.state is EngineState.READY
        await supervisor.stop("user")
        await wait_until(pilot, lambda: "stopped" in str(app.chat.query_one("#blocked").render()))
        assert app.chat.prompt.disabled


async def test_attach_chats_with_a_running_server_and_never_stops_it():
    with running_sim() as sim:
        app, supervisor = console.build(_args("--attach", sim.base_url + "/v1"))
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
    app, supervisor = console.build(_args("--attach", f"http://127.0.0.1:{port}"))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: "cannot reach" in str(app.chat.query_one("#blocked").render()),
                         timeout=15)
        assert app.chat.prompt.disabled and app.is_running


def test_bad_attach_url_is_a_usage_error():
    with pytest.raises(UsageError, match="--attach needs an http"):
        console.build(_args("--attach", "ftp://example"))
    assert cli.main(["--attach", "not a url"]) == 2


class FakeSupervisor:
    """The supervisor surface the app uses (status, start, stop, detach)."""

    def __init__(self, status: EngineStatus, *, keep_engine: bool = False) -> None:
        self.status = status
        self.keep_engine = keep_engine
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

    def detach(self) -> int:
        if not self.keep_engine:
            raise QwentuiError("start it with --keep-engine")
        self.calls.append("detach")
        return 4242


async def test_autostart_from_stopped_and_keep_engine_on_quit():
    stopped = dataclasses.replace(READY, state=EngineState.STOPPED, phase="")
    sup = FakeSupervisor(stopped, keep_engine=True)
    app = make_app(Config(), supervisor=sup, client=ScriptedServer().client(), keep_engine=True)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: not app.chat.prompt.disabled)
        assert sup.calls == ["start"]
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.screen.query_one("#keep").disabled
        await pilot.press("k")
        await pilot.pause()
    assert sup.calls == ["start", "detach"] and app.kept_pid == 4242


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


async def test_console_stops_the_engine_however_the_app_ends(monkeypatch, port):
    """E.g. the terminal closes (SIGHUP) and the app exits without the quit dialog."""
    _fast_sim_config(monkeypatch, port)
    app, supervisor = console.build(_args("--demo"))
    pids = []

    async def run_headless():
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: supervisor.status.state is EngineState.READY, timeout=30)
            pids.append(supervisor.status.pid)
            app.exit()

    monkeypatch.setattr(app, "run_async", run_headless)
    await console._run(app, supervisor)
    assert supervisor.status.state is EngineState.STOPPED and not _alive(pids[0])
