"""Snapshots of the operator layout and screens at 80×24 and 120×40 (plus the too-small notice).

Deterministic: a fixed READY status (no supervisor, no clock text), panes without readings,
fixed log text, a fixed key and a fixed cost report. Update with
`pytest tests/test_ui_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import pytest

from qwentui.config import Config
from qwentui.ui.app import make_app
from qwentui.ui.screens.log import LogFeed, LogScreen
from qwentui.ui.widgets.cost import CostPane
from qwentui.ui.widgets.gpu import GpuPane
from tests.test_ui_chat import READY
from tests.waits import wait_until
from tests.test_ui_ux import FakeSupervisor, fixed_report

LOG_TEXT = "".join(
    f"[2026-01-01 00:00:{i % 60:02d}] INFO: {'Load weight end.' if i % 7 else 'ERROR: CUDA graph retry'} #{i}\n"
    for i in range(60))


def _app():
    app = make_app(Config(), status=READY)
    app.report_loader = fixed_report
    return app


def _before(*keys: str, panes: bool = True, supervisor=None, wait=None):
    async def run_before(pilot) -> None:
        app = pilot.app
        app.chat.prompt.cursor_blink = False
        if supervisor is not None:
            app.supervisor = supervisor
        if panes:
            app.mount_side(GpuPane(id="gpu"), CostPane(id="cost"))
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        if wait is not None:
            await wait_until(pilot, lambda: wait(app))
        await pilot.pause(0.2)

    return run_before


SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES)
def test_console_layout(snap_compare, size):
    """You should see the header (SIMULATED, ● READY, model, URL) and the chat's welcome text.
    At 80×24 a tab line "F2 Chat  F3 GPU  F4 Cost" (Chat highlighted) sits under the header and the
    side panes are hidden; at 120×40 there is no tab line and the right-hand column (44 wide)
    shows "GPU: waiting for the first reading…" and "cost: waiting for the first reading…". The
    footer ends with "^p palette" and shows whole keys only: ⏎ Send, F1 Help, ^t Thinking, ..."""
    assert snap_compare(_app(), terminal_size=size, run_before=_before())


def test_narrow_gpu_tab_80x24(snap_compare):
    """You should see the GPU pane full width (no chat), "F3 GPU" highlighted in the tab line."""
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_before("f3"))


def test_too_small_60x20(snap_compare):
    """You should see only the centred notice "Enlarge the terminal to at least 80×24 (now 60×20)."."""
    assert snap_compare(_app(), terminal_size=(60, 20), run_before=_before())


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, size):
    """You should see "Keys — esc closes …" and tables of keys: Console (esc / ^c Stop, ^t, ^r, ^n,
    ^o, ^s, F1 / ? Help, F2–F4 panes, F6 / ^l engine log, F7, F8, F9, ^g, ^q, f5 restart, F10 snooze), then
    Chat prompt, Engine log, Client snippet, Cost report, Side column and Quit dialog keys."""
    assert snap_compare(_app(), terminal_size=size, run_before=_before("f1"))


@pytest.mark.parametrize("size", SIZES)
def test_log_screen_search(snap_compare, size, tmp_path):
    """You should see the engine log lines "[2026-01-01 …] INFO: …", the words "error" highlighted
    in yellow on the ERROR lines, and the status line "60 lines · paused (f follows) · /error: 1/9"."""
    path = tmp_path / "engine.log"
    path.write_text(LOG_TEXT)

    async def open_log(pilot) -> None:
        pilot.app.push_screen(LogScreen(LogFeed(path), title="Engine log — engine-30000.log"))

    async def run_before(pilot) -> None:
        pilot.app.chat.prompt.cursor_blink = False
        await open_log(pilot)
        def loaded() -> bool:
            screen = pilot.app.screen
            return isinstance(screen, LogScreen) and bool(screen.query("Log")) and \
                screen.query_one("Log").line_count == 60

        await wait_until(pilot, loaded)
        await pilot.press("g", "slash", *"error", "enter")
        await pilot.pause(0.2)

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_client_snippet(snap_compare, size):
    """You should see base URL http://127.0.0.1:30000/v1 [SIMULATED engine], model Qwen/Qwen3-1.7B,
    the key masked as "sk-q…(28 chars)", tabs curl / openai SDK / LangChain / env vars with the
    curl example (Bearer sk-q…(28 chars), chat_template_kwargs enable_thinking true)."""
    assert snap_compare(_app(), terminal_size=size, run_before=_before("f7", supervisor=FakeSupervisor()))


def test_client_snippet_langchain_120x40(snap_compare):
    """You should see the LangChain tab: ChatOpenAI(base_url=…/v1, api_key='sk-q…(28 chars)',
    model=…, extra_body={'chat_template_kwargs': {'enable_thinking': True}})."""
    assert snap_compare(_app(), terminal_size=(120, 40),
                        run_before=_before("f7", "l", "l", supervisor=FakeSupervisor()))


@pytest.mark.parametrize("size", SIZES)
def test_cost_report(snap_compare, size):
    """You should see "Cost report — 2026-01 (CNY, local time)", the summary "2026-01: ¥7.5 over
    2.5 h in 2 session(s) …", the always-on comparison line, and the Sessions table with two
    A10G sessions (idle, user)."""
    def loaded(app):
        return app.screen.query("#table-sessions") and app.screen.query_one("#table-sessions").row_count == 2

    assert snap_compare(_app(), terminal_size=size, run_before=_before("f8", wait=loaded))


def test_engine_stop_confirm_80x24(snap_compare):
    """You should see the dialog "Stop the engine? Its GPU memory is freed; chat stops working."
    with "Stop engine (y)" and "Cancel (esc)" buttons over the console."""
    async def run_before(pilot) -> None:
        await _before(supervisor=FakeSupervisor())(pilot)
        pilot.app.set_focus(None)
        await pilot.press("ctrl+g")
        await pilot.pause(0.2)

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)
