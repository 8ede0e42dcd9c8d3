"""Small modal screens: choose a file to save to; say what quitting does to the engine."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from qwentui import paths


def save_text(path_text: str, text: str) -> Path:
    """Write `text` to the user's path (~ expanded, parents created), owner-only."""
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    paths.write_private(path, text)
    return path


class SaveDialog(ModalScreen[Path | None]):
    """Ask for a path and write `text` there; dismisses with the path written or None."""

    DEFAULT_CSS = """
    SaveDialog { align: center middle; }
    SaveDialog > Vertical { width: 70; max-width: 95%; height: auto; padding: 1 2;
        border: round $accent; background: $surface; }
    SaveDialog #error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def __init__(self, title: str, default_path: str, text: str) -> None:
        super().__init__()
        self._title, self._default, self._text = title, default_path, text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title)
            yield Input(self._default, id="path")
            yield Label("", id="error")
            yield Label("Enter saves · esc cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            written = save_text(event.value.strip(), self._text)
        except (OSError, ValueError) as exc:
            self.query_one("#error", Label).update(f"Cannot save: {exc}")
            return
        self.dismiss(written)

    def action_cancel(self) -> None:
        self.dismiss(None)


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
