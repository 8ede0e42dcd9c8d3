"""Snapshots of the console attached to a guard (fixed guard state, no process, no clock)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from qwentui.config import Config
from qwentui.cost.meter import Meter
from qwentui.idle.watchdog import IdleState, IdleStatus
from qwentui.runtime.core import RuntimeSnapshot
from qwentui.runtime.link import GuardLink
from qwentui.runtime.wire import encode
from qwentui.ui.app import make_app
from tests.test_ui_chat import READY
from tests.waits import wait_until

T = 1_780_000_000.0  # a fixed wall clock


class QuietClient:
    """A guard client whose event stream stays open and silent (the test feeds snapshots)."""

    async def events(self):
        await asyncio.Event().wait()
        yield "bye", {}

    async def command(self, name, body=None):
        return {"ok": True}

    async def aclose(self):
        pass


def _snapshot() -> RuntimeSnapshot:
    cfg = Config()
    meter = Meter(cfg, clock=lambda: T, boot_time=T - 3600)
    meter.set_gpu("Tesla T4 (SIMULATED)", "T4")
    meter.engine_started(kind="sim", at=T - 840)
    idle = IdleStatus(state=IdleState.IDLE, seconds_idle=168.0, seconds_left=1632.0, reason_alive="",
                      reason_action="", warning_started=False, metrics_available=True, action="stop-engine")
    return RuntimeSnapshot(engine=READY, telemetry=None, cost=meter.snapshot(), idle=idle, seq=5)


def _app():
    snap = _snapshot()
    state = {"guard": {"pid": 4242, "engine_log": ""}, "idle": {"timeout_s": 1800.0}, "snapshot": encode(snap)}
    link = GuardLink(QuietClient(), state, {"base_url": READY.base_url, "model": READY.model, "api_key": ""})
    app = make_app(Config(), supervisor=link.engine, runtime=link)
    return app, snap


def _before(*keys: str, wait=None):
    async def run_before(pilot) -> None:
        app = pilot.app
        app.chat.prompt.cursor_blink = False
        await pilot.pause()
        link = app.runtime
        link.latest = dataclasses.replace(link.latest, seq=6)  # what the guard's next event would bring
        link.on_snapshot(link.latest)
        await wait_until(pilot, lambda: "stop in 27:12" in str(app.header.render()))
        if keys:
            await pilot.press(*keys)
        if wait is not None:
            await wait_until(pilot, lambda: wait(app))
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_attached_console(snap_compare, size):
    """You should see the header "SIMULATED ● READY  idle 2:48 — stop in 27:12  ¥1.8/h · session ¥0.42"
    (the guard's countdown and bill) and, at 120×40, the cost pane with the guard's numbers (T4, ¥1.8/h)."""
    app, _ = _app()
    assert snap_compare(app, terminal_size=size, run_before=_before())


def test_quit_dialog_leave_running_80x24(snap_compare):
    """You should see the quit dialog: "Stop engine & quit (s)", "Leave running (k)", "Cancel (esc)" and
    "Leave running: the guard keeps it running with the idle stop armed (stops in 27:12)."."""
    app, _ = _app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_before("ctrl+q"))


def test_guard_gone_80x24(snap_compare):
    """You should see "The guard is gone. Start a new one? The chat stays." with a "Start guard" button,
    the header "○ STOPPED  no guard: nothing stops the engine" and the chat input blocked:
    "engine stopped: the guard is gone"."""
    app, _ = _app()

    async def run_before(pilot) -> None:
        await _before()(pilot)
        pilot.app.runtime.gone("the guard stopped")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
