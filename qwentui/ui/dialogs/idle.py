"""Idle watchdog dialogs: the warning (Snooze / Stop now / Disable) and the poweroff countdown.

Presentation only. The app feeds `IdleWarning.status` each runtime snapshot and acts on
the choice it is dismissed with; `PoweroffCountdown` dismisses True when its countdown
runs out and False on any key (ActionRunner's `confirm` hook awaits it).
"""

from __future__ import annotations

from typing import Any, Sequence

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from qwentui.idle.watchdog import clock_text

POWEROFF_COUNTDOWN_S = 10


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


class PoweroffCountdown(ModalScreen[bool]):
    """'Powering off in 10 s' — any key cancels (False); reaching 0 confirms (True)."""

    DEFAULT_CSS = """
    PoweroffCountdown { align: center middle; }
    PoweroffCountdown > Vertical { width: 72; max-width: 100%; height: auto; padding: 1 2;
        border: heavy $error; background: $surface; }
    PoweroffCountdown #countdown { color: $error; text-style: bold; }
    PoweroffCountdown .detail { width: 1fr; color: $text-muted; }
    """

    left: reactive[int] = reactive(POWEROFF_COUNTDOWN_S)

    def __init__(self, command: Sequence[str], seconds: int = POWEROFF_COUNTDOWN_S) -> None:
        super().__init__()
        self._command = " ".join(command)
        self.set_reactive(PoweroffCountdown.left, seconds)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._text(), id="countdown")
            yield Label(f"The engine is stopped and the ledger is closed. Then: {self._command}",
                        classes="detail")
            yield Label("Press any key to cancel (the engine stays stopped).", classes="detail")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _text(self) -> str:
        return f"Powering off in {self.left} s"

    def _tick(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.dismiss(True)

    def watch_left(self) -> None:
        if self.is_mounted:
            self.query_one("#countdown", Label).update(self._text())

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        self.dismiss(False)

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.dismiss(False)
