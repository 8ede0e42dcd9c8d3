"""The console: composes the layout (header, pane tabs, chat + side column, footer) and
shows in it what the guard (or, attached to a foreign server, the local runtime)
reports. Keys, actions and dialogs belong to the app; this is the picture. It fills the
app's default screen, under which operator screens and dialogs open.

Each snapshot updates only what changed: the GPU pane when a new telemetry sample
arrived, header fields when their text changed, the cost pane (it repaints itself only
on a new value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget

from qwentui.config import Config
from qwentui.idle.watchdog import IdleState
from qwentui.runtime.core import RuntimeSnapshot
from qwentui.ui.widgets.chat import ChatPane
from qwentui.ui.widgets.cost import CostPane, header_text
from qwentui.ui.widgets.gpu import GpuPane
from qwentui.ui.widgets.header import EngineHeader
from qwentui.ui.widgets.layout import KeyFooter, PaneTabs, TooSmall

PANE_LABELS = {"gpu": "GPU", "cost": "Cost"}
PANE_KEYS = ("f3", "f4")  # side panes in mount order; F2 is the chat


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


class ConsoleView(Widget):
    """The operator console's whole picture; the app's default screen holds only this."""

    DEFAULT_CSS = "ConsoleView { width: 1fr; height: 1fr; layout: vertical; }"

    def __init__(self, cfg: Config, chat_client: Callable[[], Any], clock: Callable[[], float]) -> None:
        super().__init__(id="console")
        self.cfg, self._chat_client, self._clock = cfg, chat_client, clock
        self.view = "chat"
        self._fields: dict[str, Any] = {}
        self._telemetry_seq = -1
        self._history_loaded = False

    def compose(self) -> ComposeResult:
        chat = self.cfg.chat
        yield EngineHeader(id="header")
        yield PaneTabs(id="pane-tabs")
        with Horizontal(id="body"):
            yield ChatPane(client_factory=self._chat_client, thinking=chat.thinking, id="chat",
                           system_prompt=chat.system_prompt, max_tokens=chat.max_tokens, clock=self._clock)
            yield SideColumn(id="side")
        yield KeyFooter()
        yield TooSmall()

    @property
    def chat(self) -> ChatPane:
        return self.query_one("#chat", ChatPane)

    @property
    def header(self) -> EngineHeader:
        return self.query_one("#header", EngineHeader)

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

    def _show_view(self, view: str) -> None:
        names = [name for name, _ in self.side_panes()]
        self.view = view if view in names else "chat"
        self.query_one("#body").set_class(self.view != "chat", "-view-side")
        for name, pane in self.side_panes():
            pane.set_class(name == self.view, "-active-pane")
        self.query_one(PaneTabs).show(self._pane_tabs(), self.view)

    def show_pane(self, which: str | int) -> None:
        """Show (narrow) or focus (wide) a pane: "chat", a pane name, or a side pane's number."""
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

    # ----- what the runtime reports -----------------------------------------------------

    def show_snapshot(self, snap: RuntimeSnapshot, history: Callable[[], list[Any]]) -> None:
        """Update the panes and the header's idle/cost field from one snapshot."""
        tele = snap.telemetry
        if tele is not None and tele.seq != self._telemetry_seq:
            self._telemetry_seq = tele.seq
            gpu = self.query_one("#gpu", GpuPane)
            if not self._history_loaded:
                self._history_loaded = True
                gpu.set_history(history())
            else:
                gpu.snapshot = tele
        cost = self.query_one("#cost", CostPane)
        if cost.snapshot != snap.cost:
            cost.snapshot = snap.cost
        self._set_field("runtime", self._runtime_field(snap))  # idle first: it is what acts

    def _set_field(self, key: str, value: Any) -> None:
        if self._fields.get(key) != value:
            self._fields[key] = value
            self.header.set_field(key, value)

    @staticmethod
    def _runtime_field(snap: RuntimeSnapshot) -> Text:
        """'idle 12:30 — stop in 17:30  ¥2.5/h · session ¥0.42'; the countdown in warning colours."""
        field = Text()
        idle = snap.idle_text
        if idle:
            if snap.idle.state in (IdleState.WARNING, IdleState.ACTING):
                style = "bold black on yellow"
            else:
                style = "yellow" if snap.idle.state is IdleState.SNOOZED else ""
            field.append(idle, style=style)
        cost = header_text(snap.cost)
        if cost:
            field.append(("  " if idle else "") + cost)
        return field
