"""Base for qwentui's full-size screens: a title line, the content, the footer; esc backs out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from qwentui.ui.widgets.layout import KeyFooter, TooSmall


class OperatorScreen(ModalScreen[None]):
    """Modal so that the app's esc (stop generation) falls through to "back" here."""

    DEFAULT_CSS = """
    OperatorScreen { background: $background; }
    OperatorScreen > .screen-title { dock: top; height: 1; background: $panel; color: $foreground;
        text-style: bold; padding: 0 1; }
    OperatorScreen.-tiny > *, OperatorScreen.-short > * { display: none; }
    OperatorScreen.-tiny > TooSmall, OperatorScreen.-short > TooSmall { display: block; }
    """
    BINDINGS = [Binding("escape", "back", "Back", id="screen-back")]
    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        yield Static(self.TITLE_TEXT, classes="screen-title", markup=False, id="screen-title")
        yield from self.compose_body()
        yield KeyFooter()
        yield TooSmall()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def set_title_text(self, text: str) -> None:
        self.query_one("#screen-title", Static).update(text)

    def action_back(self) -> None:
        self.dismiss(None)
