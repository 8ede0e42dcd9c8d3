"""Operator actions mixed into QwentuiApp: panes (F2–F4), screens (F1, F6–F8), theme, engine key.

Kept out of app.py so that file stays about composition and engine wiring. Everything
here reads the app's public surface (cfg, supervisor, engine_status, chat, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.app import SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget

from qwentui.ui.screens.base import OperatorScreen
from qwentui.ui.widgets.layout import PaneTabs

PANE_LABELS = {"gpu": "GPU", "cost": "Cost"}
PANE_KEYS = ("f3", "f4")  # side panes in mount order; F2 is the chat

# F-keys are priority bindings: the chat prompt (a TextArea) binds f6/f7 to selection.
# `tooltip` is the longer text the help screen shows.
OPERATOR_BINDINGS = [
    Binding("f1", "help", "Help", id="help", key_display="F1", priority=True, tooltip="Help: this list of keys"),
    Binding("question_mark", "help", "Help", id="help-question", show=False, tooltip="Help (when not typing)"),
    Binding("f2", "show_pane('chat')", "Chat", id="pane-chat", key_display="F2", show=False, priority=True,
            tooltip="Chat pane (focus the prompt)"),
    Binding("f3", "show_pane(1)", "GPU", id="pane-1", key_display="F3", show=False, priority=True,
            tooltip="Side pane 1, GPU (narrow terminal: show it; wide: focus it, j/k scroll)"),
    Binding("f4", "show_pane(2)", "Cost", id="pane-2", key_display="F4", show=False, priority=True,
            tooltip="Side pane 2, cost (narrow terminal: show it; wide: focus it, j/k scroll)"),
    # F5 is the runtime's "restart engine"
    Binding("f6", "engine_log", "Log", id="engine-log", key_display="F6", priority=True,
            tooltip="Engine log (/ search, n/N, f follow)"),
    Binding("ctrl+l", "engine_log", "Log", id="engine-log-ctrl-l", show=False, tooltip="Engine log"),
    Binding("f7", "client_snippet", "Client", id="client-snippet", key_display="F7", show=False, priority=True,
            tooltip="Client snippet: URL, model, key; curl, openai, LangChain (copy / save)"),
    Binding("f8", "cost_report", "Report", id="cost-report", key_display="F8", show=False, priority=True,
            tooltip="Cost report for this month"),
    Binding("f9", "change_theme", "Theme", id="change-theme", key_display="F9", show=False, priority=True,
            tooltip="Change theme"),
    Binding("ctrl+g", "engine_toggle", "Engine on/off", id="engine-toggle", show=False,
            tooltip="Start the engine / stop it (asks first)"),
]


def pane_name(pane: Widget) -> str:
    """'gpu' for GpuPane, 'cost' for CostPane, else the widget id or class name."""
    name = type(pane).__name__.lower().removesuffix("pane")
    return name if name in PANE_LABELS else (pane.id or name)


class SideColumn(VerticalScroll):
    """The right-hand column; focusable so j/k scroll it, esc goes back to the chat."""

    BINDINGS = [
        Binding("j", "scroll_down", "Down", id="side-down", show=False),
        Binding("k", "scroll_up", "Up", id="side-up", show=False),
        Binding("escape", "app.show_pane('chat')", "Chat", id="side-back", show=False),
    ]


class OperatorActions:
    """Mixin for QwentuiApp (an App): pane switching, operator screens, palette entries."""

    view: str = "chat"
    report_loader: Callable[[], Any] | None = None  # tests inject a fixed report

    # ----- side panes -----------------------------------------------------------------

    def add_side_panes(self, panes: Iterable[Widget]) -> None:
        side = self.query_one("#side", SideColumn)
        panes = list(panes)
        for pane in panes:
            pane.add_class("side-pane", f"-pane-{pane_name(pane)}")
        side.mount_all(panes)
        side.add_class("-has-panes")
        self.query_one(PaneTabs).add_class("-has-panes")
        self._show_view(self.view)

    def side_panes(self) -> list[tuple[str, Widget]]:
        return [(pane_name(w), w) for w in self.query_one("#side", SideColumn).query_children(".side-pane")]

    def _pane_tabs(self) -> tuple[tuple[str, str, str], ...]:
        tabs = [("F2", "chat", "Chat")]
        for key, (name, _) in zip(PANE_KEYS, self.side_panes()):
            tabs.append((key.upper(), name, PANE_LABELS.get(name, name.title())))
        return tuple(tabs)

    def action_show_pane(self, which: str | int) -> None:
        if self.screen.is_modal:
            if not isinstance(self.screen, OperatorScreen):
                return
            self.pop_screen()  # F2-F4 from a log/help/... screen go back to the console
        panes = self.side_panes()
        if isinstance(which, int):
            if not 0 < which <= len(panes):
                return
            which = panes[which - 1][0]
        self._show_view(which)
        if which == "chat":
            self.chat.prompt.focus()
        else:
            side = self.query_one("#side", SideColumn)
            side.focus()
            target = dict(panes).get(which)
            if target is not None and not self.screen.has_class("-narrow"):
                side.scroll_to_widget(target, animate=False, top=True)

    def _show_view(self, view: str) -> None:
        names = [name for name, _ in self.side_panes()]
        self.view = view if view in names else "chat"
        self.query_one("#body").set_class(self.view != "chat", "-view-side")
        for name, pane in self.side_panes():
            pane.set_class(name == self.view, "-active-pane")
        self.query_one(PaneTabs).show(self._pane_tabs(), self.view)

    # ----- screens --------------------------------------------------------------------

    def open_screen(self, screen: Screen) -> None:
        """Open over the console; an operator screen already open is replaced (no stacking).
        Over a dialog (quit, save, idle warning) nothing opens: the dialog needs its answer."""
        if self.screen.is_modal and not isinstance(self.screen, OperatorScreen):
            self.bell()
            return
        if isinstance(self.screen, OperatorScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def action_help(self) -> None:
        from qwentui.ui.screens.help import HelpScreen, app_rows, rows_for
        from qwentui.ui.screens.log import LogScreen
        from qwentui.ui.screens.report import ReportScreen
        from qwentui.ui.screens.snippet import SnippetScreen
        from qwentui.ui.widgets.chat_input import ChatInput
        from qwentui.ui.dialogs.quit import QuitDialog

        sections = [("Console (work everywhere: F-keys, ctrl+q; others on the console)", app_rows(self)),
                    ("Chat prompt", rows_for(self, ChatInput.BINDINGS))]
        for title, cls in (("Engine log (F6)", LogScreen), ("Client snippet (F7)", SnippetScreen),
                           ("Cost report (F8)", ReportScreen), ("Side column (F3/F4 focus it)", SideColumn),
                           ("Quit dialog (ctrl+q while the engine runs)", QuitDialog)):
            sections.append((title, rows_for(self, cls.BINDINGS)))
        self.open_screen(HelpScreen(sections))

    def engine_log_feed(self):
        from qwentui.ui.screens.log import LogFeed

        sup = self.supervisor
        if sup is None:
            return LogFeed(None, list)
        return LogFeed(sup.log_path, sup.log_lines)

    def action_engine_log(self) -> None:
        from qwentui.ui.screens.log import LogScreen

        self.open_screen(LogScreen(self.engine_log_feed()))

    def client_endpoint(self) -> tuple[str, str, str]:
        """(base URL, model, API key) that other programs use."""
        sup, eng = self.supervisor, self.cfg.engine
        if sup is not None:
            return sup.base_url, sup.served_model or "default", sup.api_key
        return f"http://{eng.host}:{eng.port}", eng.served_model_name or eng.model, eng.api_key

    def action_client_snippet(self) -> None:
        from qwentui.ui.screens.snippet import SnippetScreen

        base, model, key = self.client_endpoint()
        simulated = bool(getattr(self.engine_status, "simulated", False))
        self.open_screen(SnippetScreen(base, model, key, thinking=self.chat.thinking, simulated=simulated))

    def action_cost_report(self) -> None:
        from qwentui.ui.screens.report import ReportScreen, month_report

        loader = self.report_loader or (lambda: month_report(self.cfg))
        self.open_screen(ReportScreen(loader))

    # ----- engine ---------------------------------------------------------------------

    def action_engine_toggle(self) -> None:
        """ctrl+g: start a stopped engine; stopping asks first."""
        sup = self.supervisor
        if sup is None:
            self.notify("This console does not manage an engine.", timeout=3)
            return
        if not getattr(sup.status, "running", False):
            self.notify("Starting the engine…", timeout=3)
            self.start_engine()
            return
        if not self._owns_engine():
            self.notify("Attached to an engine qwentui did not start: it is never stopped from here.", timeout=4)
            return
        from qwentui.ui.dialogs.confirm import ConfirmDialog

        def answer(yes: bool | None) -> None:
            if yes:
                self.notify("Stopping the engine…", timeout=4)
                self.stop_engine()

        self.push_screen(ConfirmDialog("Stop the engine? Its GPU memory is freed; chat stops working.",
                                       "Stop engine"), answer)

    # ----- palette --------------------------------------------------------------------

    def operator_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Help: all keys", "Every key binding (F1 or ?)", self.action_help)
        yield SystemCommand("Open engine log", "Scroll, / search, f follow the tail (F6, ctrl+l)",
                            self.action_engine_log)
        yield SystemCommand("Copy client snippet", "Base URL, model, key; curl/openai/LangChain (F7)",
                            self.action_client_snippet)
        yield SystemCommand("Open cost report", "This month's sessions and totals (F8)", self.action_cost_report)
        yield SystemCommand("Change theme", f"Now {self.theme} (F9)", self.action_change_theme)
        yield SystemCommand("Focus chat", "The chat and its prompt (F2)", lambda: self.action_show_pane("chat"))
        for index, (key, (name, _)) in enumerate(zip(PANE_KEYS, self.side_panes()), start=1):
            label = PANE_LABELS.get(name, name.title())
            yield SystemCommand(f"Focus {label} pane", f"Show/scroll the {label} pane ({key.upper()})",
                                lambda i=index: self.action_show_pane(i))
