"""Choose a file to save to (the fallback when OSC 52 copy is dropped)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

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
