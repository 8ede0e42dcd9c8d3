"""Pilot tests of the operator keys: help, panes, log, client snippet, report, theme, engine, sizes."""

from __future__ import annotations

import ast
import json
import shlex
import time
from dataclasses import dataclass, field
from decimal import Decimal

from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Log, Static, TabbedContent
from textual.widgets._footer import FooterKey

from qwentui.config import Config
from qwentui.cost import report as cost_report
from qwentui.cost.ledger import SessionRow
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.ui.app import QwentuiApp, make_app
from qwentui.ui.screens.help import HelpScreen
from qwentui.ui.widgets.layout import TooSmall
from qwentui.ui.screens.log import LogFeed, LogScreen
from qwentui.ui.screens.report import ReportScreen
from qwentui.ui.dialogs.confirm import ConfirmDialog
from qwentui.ui.screens.snippet import SnippetScreen, snippets
from qwentui.ui.widgets.cost import CostPane
from qwentui.ui.widgets.gpu import GpuPane
from qwentui.ui.dialogs.save import SaveDialog
from tests.test_ui_chat import READY
from tests.waits import wait_until

KEY = "sk-qwentui-secret-0123456789"


def _app(**kw) -> QwentuiApp:
    return make_app(Config(), status=READY, **kw)


async def _panes(pilot) -> None:
    pilot.app.mount_side(GpuPane(id="gpu"), CostPane(id="cost"))
    await pilot.pause()


# ----- help, palette, footer ---------------------------------------------------------------

async def test_f1_and_question_mark_open_help_listing_every_app_key():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(f"{keys} {what}" for _, rows in app.screen.sections for keys, what, _ in rows)
        for label in ("F1 / ?", "F6 / ^l", "F7", "F8", "F9", "^g", "^q", "^t", "^n", "Send", "Engine log"):
            assert label in text, label
        await pilot.press("j", "k", "escape")
        assert not app.screen.is_modal
        app.set_focus(None)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        assert not app.screen.is_modal


async def test_question_mark_types_into_the_prompt():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert app.chat.prompt.text == "?" and not app.screen.is_modal


async def test_palette_lists_every_operator_action():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _panes(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Help: all keys", "Open engine log", "Copy client snippet", "Open cost report",
                      "Change theme", "Focus chat", "Focus GPU pane", "Focus Cost pane", "Toggle thinking",
                      "New chat", "Quit"):
            assert title in titles, title


async def test_footer_at_80_columns_fits_whole_keys_in_order():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        keys = [k for k in app.screen.query(FooterKey)]
        labels = [f"{k.key_display} {k.description}" for k in keys]
        assert labels[0] == "⏎ Send" and "F1 Help" in labels and "^q Quit" in labels and "F6 Log" in labels
        assert labels[-1].endswith("palette")
        assert sum(k.size.width + 1 for k in keys) <= 80
        assert labels.index("F1 Help") < labels.index("^t Thinking") < labels.index("^q Quit")


async def test_footer_shows_stop_first_while_streaming():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.chat.busy = True
        app.refresh_bindings()
        await pilot.pause(0.2)
        first = app.screen.query(FooterKey).first()
        assert (first.key_display, first.description) == ("esc", "Stop")


# ----- layout ---------------------------------------------------------------------------

async def test_narrow_f3_f4_swap_panes_and_f2_esc_come_back():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _panes(pilot)
        side, chat, tabs = app.query_one("#side"), app.query_one("#chat"), app.query_one("#pane-tabs")
        assert tabs.display and not side.display and chat.display
        await pilot.press("f3")
        assert app.view == "gpu" and side.display and not chat.display
        assert app.query_one("#gpu").display and not app.query_one("#cost").display
        assert app.focused is side
        await pilot.press("f4")
        assert app.view == "cost" and app.query_one("#cost").display and not app.query_one("#gpu").display
        await pilot.press("j", "k", "escape")
        assert app.view == "chat" and chat.display and app.focused is app.chat.prompt
        await pilot.press("f4", "f2")
        assert app.view == "chat" and app.focused is app.chat.prompt


async def test_wide_shows_both_and_resizes_live():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _panes(pilot)
        side, chat, tabs = app.query_one("#side"), app.query_one("#chat"), app.query_one("#pane-tabs")
        assert side.display and chat.display and not tabs.display
        assert side.outer_size.width == 44
        await pilot.press("f4")
        assert chat.display and app.focused is side
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.1)
        assert 44 < side.outer_size.width <= 72 and chat.size.width > 120
        await pilot.resize_terminal(90, 30)
        await pilot.pause(0.1)
        assert tabs.display and side.display and not chat.display  # F4 was chosen: narrow shows cost
        await pilot.resize_terminal(60, 20)
        await pilot.pause(0.1)
        notice = app.screen.query_one(TooSmall)
        assert notice.display and not app.query_one("#body").display
        assert "at least 80×24 (now 60×20)" in str(notice.render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.1)
        assert not notice.display and app.query_one("#body").display


async def test_too_small_on_an_operator_screen():
    app = _app()
    async with app.run_test(size=(70, 30)) as pilot:
        notice = app.screen.query_one(TooSmall)
        assert notice.display and "now 70×30" in str(notice.render())
        await pilot.press("f1")
        assert app.screen.query_one(TooSmall).display
        await pilot.press("escape")
        assert not app.screen.is_modal


# ----- engine log -----------------------------------------------------------------------

@dataclass
class FakeSupervisor:
    log_path: object = None
    lines: list = field(default_factory=list)
    status: EngineStatus = READY
    base_url: str = "http://127.0.0.1:30000"
    api_key: str = KEY
    served_model: str = "Qwen/Qwen3-1.7B"
    calls: list = field(default_factory=list)

    def log_lines(self):
        return list(self.lines)

    async def start(self):
        self.calls.append("start")
        self.status = READY

    async def stop(self, reason="user"):
        self.calls.append(("stop", reason))
        self.status = EngineStatus(EngineState.STOPPED, "", "sim", "m", self.base_url, stop_reason=reason)


async def test_log_screen_loads_5mb_file_fast_and_follows_new_lines(tmp_path):
    path = tmp_path / "engine.log"
    line = "[2026-01-01 00:00:00] INFO: Prefill batch, #new-seq: 1, #new-token: 7, #cached-token: 0, " + "x" * 60
    with open(path, "w") as fh:
        for i in range(5 * 1024 * 1024 // (len(line) + 8)):
            fh.write(f"{line} {i:06d}\n")
        fh.write("needle one\n")
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        t0 = time.monotonic()
        app.push_screen(LogScreen(LogFeed(path), poll_s=0.05))
        await pilot.pause()
        screen = app.screen
        log = screen.query_one(Log)
        await wait_until(pilot, lambda: log.line_count > 0, timeout=10)
        assert time.monotonic() - t0 < 5
        assert log.line_count == 20_000 and log.lines[-1] == "needle one"
        assert log.scroll_offset.y == log.max_scroll_y  # follows the tail
        with open(path, "a") as fh:
            fh.write("needle two\npartial")
        await wait_until(pilot, lambda: log.lines[-1] == "needle two")
        await pilot.press("f", "g")
        assert not screen.follow and log.scroll_offset.y == 0
        with open(path, "a") as fh:
            fh.write(" line\n")
        await wait_until(pilot, lambda: log.lines[-1] == "partial line")
        assert log.scroll_offset.y == 0  # paused: did not jump to the end
        t1 = time.monotonic()
        await pilot.press("g", "j", "j", "k", "G")  # stays responsive on a big log
        assert time.monotonic() - t1 < 3 and screen.follow


async def test_log_search_next_prev_and_esc_backs_out(tmp_path):
    path = tmp_path / "engine.log"
    path.write_text("".join(f"line {i}{' ERROR here' if i in (10, 50, 90) else ''}\n" for i in range(200)))
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(LogScreen(LogFeed(path), poll_s=0.05))
        await pilot.pause()
        screen = app.screen
        log = screen.query_one(Log)
        await wait_until(pilot, lambda: log.line_count == 200)
        await pilot.press("g", "slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"error", "enter")
        status = lambda: str(screen.query_one("#log-status", Static).render())  # noqa: E731
        assert screen._match == 10 and "/error: 1/3" in status()
        await pilot.press("n")
        assert screen._match == 50 and "2/3" in status()
        await pilot.press("n", "n")
        assert screen._match == 10  # wraps
        await pilot.press("N")
        assert screen._match == 90
        await pilot.press("slash", *"zzz", "enter")
        assert "no match" in status()
        await pilot.press("slash")
        await pilot.press("escape")  # closes the search box only
        assert isinstance(app.screen, LogScreen) and app.focused is log
        await pilot.press("escape")
        assert not app.screen.is_modal


async def test_f6_and_ctrl_l_open_log_from_supervisor_tail_and_rotation(tmp_path):
    sup = FakeSupervisor(lines=["=== qwentui: starting", "api_key=sk-q…(28 chars)"])
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.supervisor = sup  # no file: the in-memory tail
        await pilot.press("f6")
        log = app.screen.query_one(Log)
        await wait_until(pilot, lambda: log.line_count == 2)
        assert "Engine log" in str(app.screen.query_one("#screen-title", Static).render())
        await pilot.press("escape")
        app.set_focus(None)
        await pilot.press("ctrl+l")
        assert isinstance(app.screen, LogScreen)
        await pilot.press("escape")
    path = tmp_path / "e.log"
    path.write_text("old 1\nold 2\n")
    feed = LogFeed(path)
    assert feed.initial() == ["old 1", "old 2"]
    path.rename(tmp_path / "e.log.1")
    path.write_text("new\n")
    assert feed.poll() == (True, ["new"])
    assert feed.poll() == (False, [])


# ----- client snippet -------------------------------------------------------------------

def test_snippets_use_chat_template_kwargs_and_are_valid():
    out = snippets("http://127.0.0.1:30000/", "Qwen/Qwen3-1.7B", KEY, thinking=False)
    for name in ("openai", "langchain"):
        ast.parse(out[name])
        assert "extra_body={'chat_template_kwargs': {'enable_thinking': False}}" in out[name]
        assert "base_url='http://127.0.0.1:30000/v1'" in out[name] and KEY in out[name]
    words = shlex.split(out["curl"].replace("\\\n", " "))
    body = json.loads(words[words.index("-d") + 1])
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and "enable_thinking" not in body
    assert f"Authorization: Bearer {KEY}" in words and words[1] == "http://127.0.0.1:30000/v1/chat/completions"
    assert "OPENAI_API_KEY=" + KEY in out["env"]
    nokey = snippets("http://h:1", "m", "")
    assert "Authorization" not in nokey["curl"] and "api_key='EMPTY'" in nokey["openai"]


async def test_f7_snippet_masks_key_copies_full_key_and_saves(tmp_path):
    sup = FakeSupervisor()
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.supervisor = sup
        await pilot.press("f7")
        screen = app.screen
        assert isinstance(screen, SnippetScreen)
        shown = " ".join(str(s.render()) for s in screen.query(Static))
        assert KEY not in shown and "sk-q…(28 chars)" in shown
        await pilot.press("c")
        assert KEY in app.clipboard and "curl" in app.clipboard
        await pilot.press("l", "c")
        assert "from openai import OpenAI" in app.clipboard
        await pilot.press("h", "h", "c")
        assert app.clipboard.startswith("export OPENAI_BASE_URL")
        await pilot.press("s")
        assert isinstance(app.screen, SaveDialog)
        target = tmp_path / "client.txt"
        field_ = app.screen.query_one(Input)
        field_.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert KEY in target.read_text() and oct(target.stat().st_mode & 0o777) == "0o600"
        await pilot.press("escape")
        assert not app.screen.is_modal


# ----- cost report ----------------------------------------------------------------------

def fixed_report() -> cost_report.Report:
    start, end, now = 1_767_225_600.0, 1_769_904_000.0, 1_767_400_000.0  # Jan 2026 (UTC)
    rows = [SessionRow(id=1, start=start + 3600, stop=start + 3 * 3600, heartbeat=start + 3 * 3600,
                       minutes=None, pid=None, gpu_model="NVIDIA A10G", gpu_class="A10G", price_per_hour=Decimal("3.0"),
                       currency="CNY", tokens_in=1200, tokens_out=3400, requests=12, cache_hits=2,
                       cache_saved=300, stop_reason="idle", engine_kind="sglang", cost=Decimal("6.0")),
            SessionRow(id=2, start=start + 86400, stop=start + 86400 + 1800, heartbeat=start + 86400 + 1800,
                       minutes=None, pid=None, gpu_model="NVIDIA A10G", gpu_class="A10G", price_per_hour=Decimal("3.0"),
                       currency="CNY", tokens_in=100, tokens_out=900, requests=3, cache_hits=0,
                       cache_saved=0, stop_reason="user", engine_kind="sglang", cost=Decimal("1.5"))]
    from datetime import timezone
    return cost_report.build(rows, start, end, cfg=Config(), title="2026-01", now=now, tz=timezone.utc)


async def test_f8_report_shows_tables_and_esc_backs_out(tmp_path):
    app = _app()
    app.report_loader = fixed_report
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f8")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        table = screen.query_one("#table-sessions", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        assert "2026-01: ¥7.5 over 2.5 h in 2 session(s)" in str(screen.query_one("#report-summary", Static).render())
        assert screen.query_one(TabbedContent).active == "tab-chart"  # the month's picture first
        await pilot.press("l", "l")  # → What-if → Sessions
        await pilot.press("j")
        assert table.cursor_row == 1
        await pilot.press("l")
        days = screen.query_one("#table-days", DataTable)
        assert days.row_count == 3 and app.focused is days  # two days and the total
        await pilot.press("escape")
        assert not app.screen.is_modal


async def test_report_from_an_empty_ledger():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f8")
        summary = app.screen.query_one("#report-summary", Static)
        await wait_until(pilot, lambda: "no engine sessions" in str(summary.render()))


# ----- theme, engine, screen switching --------------------------------------------------

async def test_f9_opens_the_theme_picker_with_our_themes():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f9")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"qwentui-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.theme == "qwentui-light")


async def test_ctrl_g_starts_a_stopped_engine_and_asks_before_stopping():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        sup = FakeSupervisor(status=EngineStatus(EngineState.STOPPED, "", "sim", "m", "http://127.0.0.1:1"))
        app.supervisor = sup
        app.set_focus(None)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: sup.calls == ["start"])
        await pilot.press("ctrl+g")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")
        assert sup.calls == ["start"] and not app.screen.is_modal
        await pilot.press("ctrl+g", "y")
        await wait_until(pilot, lambda: ("stop", "user") in sup.calls)


async def test_screens_replace_each_other_and_f2_returns_to_chat():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1", "f7", "f6")
        assert isinstance(app.screen, LogScreen) and len(app.screen_stack) == 2
        await pilot.press("f2")
        assert len(app.screen_stack) == 1 and app.focused is app.chat.prompt


async def test_quit_dialog_says_what_leaving_it_running_means():
    from qwentui.ui.dialogs.quit import QuitDialog

    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(QuitDialog("m at u", keep_note="the guard keeps it running (stops in 27:12)"))
        await pilot.pause()
        text = " ".join(str(w.render()) for w in app.screen.query("Label"))
        assert "Leave running: the guard keeps it running (stops in 27:12)." in text
        await pilot.press("f6")  # operator screens never open over a dialog
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("escape")


def test_serve_snippets_read_the_key_from_the_environment():
    """serve prints the same examples as F7, with the key left in $OPENAI_API_KEY."""
    from qwentui.chat.snippets import snippets as shared

    out = shared("http://127.0.0.1:30000", "m", KEY, thinking=True, key_in_env=True)
    assert all(KEY not in text for text in out.values())
    assert '-H "Authorization: Bearer $OPENAI_API_KEY"' in out["curl"]
    for name in ("openai", "langchain"):
        ast.parse(out[name])
        assert "api_key=os.environ['OPENAI_API_KEY']" in out[name] and out[name].startswith("import os\n")
    assert snippets is shared  # the F7 screen builds from the same module
