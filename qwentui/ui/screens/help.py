"""F1: every key, generated from the live bindings (so `ui.keymap` changes show up here)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from qwentui.ui.screens.base import OperatorScreen

Row = tuple[str, str, str]  # keys, what it does, binding id


def rows_for(app, bindings: Iterable[Binding]) -> list[Row]:
    """One row per action: its keys joined with " / " (comma keys expanded)."""
    by_action: dict[str, list] = {}
    for binding in Binding.make_bindings(bindings):
        what = binding.tooltip or binding.description or binding.action
        entry = by_action.setdefault(binding.action, [[], what, binding.id or ""])
        display = app.get_key_display(binding)
        if display not in entry[0]:
            entry[0].append(display)
    return [(" / ".join(keys), what, bid) for keys, what, bid in by_action.values()]


def app_rows(app) -> list[Row]:
    """The app's own keys, with the user's `ui.keymap` applied (binding id → keys)."""
    keymap = getattr(getattr(app, "cfg", None), "ui", None)
    keymap = dict(getattr(keymap, "keymap", {}) or {})
    bindings = []
    for binding in type(app).BINDINGS:
        if isinstance(binding, Binding) and binding.id in keymap:
            binding = Binding(keymap[binding.id], binding.action, binding.description, id=binding.id)
        bindings.append(binding)
    return rows_for(app, bindings)


def key_table(rows: list[Row]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 1), expand=False)
    table.add_column("keys", style="bold", no_wrap=True)
    table.add_column("action")
    for keys, what, _ in rows:
        table.add_row(keys, what)
    return table


class HelpScreen(OperatorScreen):
    DEFAULT_CSS = """
    HelpScreen #help-body { height: 1fr; padding: 0 1; }
    HelpScreen .help-section { margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="screen-back"),
        Binding("j,down", "scroll('down')", "Scroll", id="help-down", show=False),
        Binding("k,up", "scroll('up')", "Scroll", id="help-up", show=False),
    ]
    TITLE_TEXT = "Keys — esc closes · ctrl+p lists every command"

    def __init__(self, sections: list[tuple[str, list[Row]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            for title, rows in self.sections:
                if rows:
                    yield Static(Text(title, style="bold"), classes="help-title")
                    yield Static(key_table(rows), classes="help-section")
            yield Static(Text("The engine, idle stop and bill belong to the guard, a background process: "
                              "closing this console (or losing SSH) leaves them running and watched; "
                              "'qwentui' attaches again, 'qwentui status' / 'qwentui stop' reach the guard "
                              "from a shell. F10, ctrl+g and F5 act through the guard.", style="dim"))
            yield Static(Text("Command palette (ctrl+p) has every action by name; screens list their "
                              "own keys in their footer.", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_scroll(self, direction: str) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.scroll_down() if direction == "down" else body.scroll_up()
