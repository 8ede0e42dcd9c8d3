"""Quitting states its choice: stop the engine and quit, keep it running, or cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitDialog(ModalScreen[str]):
    """Quitting states its choice: 'stop' (engine and quit), 'keep' (engine runs on), 'cancel'."""

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
        Binding("k", "choose('keep')", "Keep engine", id="quit-keep"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="quit-cancel"),
    ]

    def __init__(self, detail: str, *, can_keep: bool) -> None:
        super().__init__()
        self._detail = detail
        self._can_keep = can_keep

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Quit qwentui — the engine is still running.")
            yield Label(self._detail, classes="detail")
            with Horizontal():
                yield Button("Stop engine & quit (s)", id="stop", variant="error")
                yield Button("Keep running (k)", id="keep", variant="warning", disabled=not self._can_keep)
                yield Button("Cancel (esc)", id="cancel")
            if not self._can_keep:
                yield Label("To leave the engine running after quitting, start qwentui with --keep-engine.",
                            classes="detail")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        if choice == "keep" and not self._can_keep:
            return
        self.dismiss(choice)
