"""The idle warning dialog (Snooze / Stop now / Disable).

Presentation only. The app feeds `IdleWarning.status` each snapshot and acts on the
choice it is dismissed with (through the guard). The guard powers off without asking a
console: by then the warning was up for `idle.warn_before` and nobody answered.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from qwentui.idle.watchdog import clock_text

def warning_text(status: Any) -> str:
    """'No activity for 28:00 — the engine stops in 1:59.' (or the budget's wording)."""
    if status is None:
        return ""
    left = clock_text(getattr(status, "seconds_left", 0) or 0, up=True)
    what = "the box powers off" if getattr(status, "action", "") == "poweroff" else "the engine stops"
    if getattr(status, "reason_action", "") == "budget":
        return f"Budget reached — {what} in {left}."
    return f"No activity for {clock_text(getattr(status, 'seconds_idle', 0))} — {what} in {left}."


class IdleWarning(ModalScreen[str | None]):
    """Dismissed with 'snooze', 'stop', 'disable', or None (esc: keep counting)."""

    DEFAULT_CSS = """
    IdleWarning { align: center middle; }
    IdleWarning > Vertical { width: 72; max-width: 100%; height: auto; padding: 1 2;
        border: round $warning; background: $surface; }
    IdleWarning #idle-text { color: $warning; text-style: bold; }
    IdleWarning Horizontal { height: auto; margin-top: 1; }
    IdleWarning Button { margin-right: 1; }
    IdleWarning .detail { width: 1fr; color: $text-muted; }
    """
    BINDINGS = [
        Binding("s", "choose('snooze')", "Snooze", id="idle-snooze"),
        Binding("x", "choose('stop')", "Stop now", id="idle-stop-now"),
        Binding("d", "choose('disable')", "Disable", id="idle-disable"),
        Binding("escape", "choose(None)", "Keep counting", id="idle-dismiss"),
    ]

    status: reactive[Any] = reactive(None, always_update=True)

    def __init__(self, status: Any, *, timeout_text: str = "") -> None:
        super().__init__()
        self.set_reactive(IdleWarning.status, status)
        self._timeout_text = timeout_text

    def compose(self) -> ComposeResult:
        snooze = f"Snooze {self._timeout_text} (s)" if self._timeout_text else "Snooze (s)"
        with Vertical():
            yield Label(warning_text(self.status), id="idle-text")
            yield Label("Nobody is using the engine, and the GPU bills by the hour.", classes="detail")
            with Horizontal():
                yield Button(snooze, id="snooze", variant="primary")
                yield Button("Stop now (x)", id="stop", variant="error")
                yield Button("Disable (d)", id="disable")
            yield Label("esc closes this and keeps counting; any activity cancels the stop.", classes="detail")

    def watch_status(self, status: Any) -> None:
        if self.is_mounted:
            self.query_one("#idle-text", Label).update(warning_text(status))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
