"""Quitting states its choice: stop the engine (and its guard) and quit, leave it running
under the guard with the idle stop armed, or cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitDialog(ModalScreen[str]):
    """Quitting states its choice: 'stop' (engine, guard, quit), 'keep' (it runs on), 'cancel'."""

    DEFAULT_CSS = """
    QuitDialog { align: center middle; }
    QuitDialog > Vertical { width: 72; max-width: 100%; height: auto; padding: 1 2;
        border: round $warning; background: $surface; }
    QuitDialog Horizontal { height: auto; margin-top: 1; }
    QuitDialog Button { margin-right: 1; }
    QuitDialog .detail { width: 1fr; color: $text-muted; }
    """
    BINDINGS = [
        Binding("s", "choose('stop')", "Stop engine & quit", id="quit-stop"),
        Binding("k", "choose('keep')", "Leave running", id="quit-keep"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="quit-cancel"),
    ]

    def __init__(self, detail: str, *, keep_note: str) -> None:
        super().__init__()
        self._detail = detail
        self._keep_note = keep_note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Quit qwentui — the engine is still running.")
            yield Label(self._detail, classes="detail")
            with Horizontal():
                yield Button("Stop engine & quit (s)", id="stop", variant="error")
                yield Button("Leave running (k)", id="keep", variant="warning")
                yield Button("Cancel (esc)", id="cancel")
            yield Label(f"Leave running: {self._keep_note}.", classes="detail", id="keep-note")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
