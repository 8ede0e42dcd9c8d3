"""Multi-line prompt: Enter sends, Shift+Enter / Ctrl+J add a line, Up/Down walk the history."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class ChatInput(TextArea):
    DEFAULT_CSS = """
    ChatInput { height: auto; min-height: 3; max-height: 12; border: round $accent 60%; }
    ChatInput:focus { border: round $accent; }
    ChatInput:disabled { border: round $warning 50%; }
    """

    # Enter and Newline are handled in `_on_key`, in the order keys arrive. As priority
    # bindings they ran on the app's queue *before* the characters typed just ahead of them
    # in the same burst (paste, tmux send-keys, batched SSH) reached this widget, so a
    # partial line or nothing was sent. These entries only label the footer and palette.
    BINDINGS = [
        Binding("enter", "submit", "Send", id="send"),
        Binding("shift+enter,ctrl+j", "newline", "Newline", id="newline", key_display="^j"),
        Binding("up", "history_previous", "History", id="history-previous", key_display="↑↓"),
        Binding("down", "history_next", "History", id="history-next", show=False),
    ]

    @dataclass
    class Submitted(Message):
        """The user asks to send `text` (never empty or whitespace-only); the receiver
        calls `accept` once it really sent it, so a refused message stays in the prompt."""

        input: "ChatInput"
        text: str

        @property
        def control(self) -> "ChatInput":
            return self.input

    # After this long without a key the cursor stops blinking: a blinking cursor costs
    # ~1 % of a core and ~0.5 KB/s of terminal output over SSH while nobody types.
    BLINK_FOR_S = 10.0

    def __init__(self, *, history_size: int = 200, **kw) -> None:
        super().__init__(soft_wrap=True, tab_behavior="focus", show_line_numbers=False,
                         highlight_cursor_line=False, compact=False, **kw)
        self.sent_history: list[str] = []
        self._history_size = history_size
        self._index: int | None = None  # position in history while browsing
        self._draft = ""

    def on_mount(self) -> None:
        self._steady_timer = self.set_timer(self.BLINK_FOR_S, self._stop_blinking)

    def _stop_blinking(self) -> None:
        self.cursor_blink = False

    _KEY_ACTIONS = {"enter": "submit", "shift+enter": "newline", "ctrl+j": "newline"}

    async def _on_key(self, event: events.Key) -> None:
        """Enter / Shift+Enter act here, after every key queued before them (see BINDINGS).

        Other keys fall through to TextArea's own `_on_key` (Textual walks the MRO and calls
        one `_on_key`/`on_key` per class, so the blink restart lives here too).
        """
        self._keep_blinking()
        action = self._KEY_ACTIONS.get(event.key)
        if action is None:
            return
        event.stop()
        event.prevent_default()  # TextArea's _on_key would insert a newline
        if action == "submit":
            self.action_submit()
        elif not self.read_only:
            self.action_newline()

    def _keep_blinking(self) -> None:
        """Any key brings the blink back for another BLINK_FOR_S."""
        if self.cursor_blink:
            self._steady_timer.reset()
        else:  # the one-shot timer has fired: a fired timer cannot be reset
            self.cursor_blink = True
            self._steady_timer = self.set_timer(self.BLINK_FOR_S, self._stop_blinking)

    def action_submit(self) -> None:
        text = self.text
        if not text.strip():
            return  # empty message: ignored, nothing is sent
        self.post_message(self.Submitted(self, text))

    def accept(self, text: str) -> None:
        """The message was sent: keep it in the history and empty the prompt."""
        self.remember(text)
        if self.text == text:
            self.clear()

    def action_newline(self) -> None:
        self.insert("\n")

    def remember(self, text: str) -> None:
        if not self.sent_history or self.sent_history[-1] != text:
            self.sent_history.append(text)
            del self.sent_history[:-self._history_size]
        self._index = None
        self._draft = ""

    def action_history_previous(self) -> None:
        if not self.sent_history or not self.navigator.is_first_wrapped_line(self.cursor_location):
            self.action_cursor_up()
            return
        if self._index is None:
            self._draft, self._index = self.text, len(self.sent_history)
        if self._index > 0:
            self._index -= 1
            self._show(self.sent_history[self._index])

    def action_history_next(self) -> None:
        if self._index is None or not self.navigator.is_last_wrapped_line(self.cursor_location):
            self.action_cursor_down()
            return
        self._index += 1
        if self._index >= len(self.sent_history):
            self._index = None
            self._show(self._draft)
        else:
            self._show(self.sent_history[self._index])

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
