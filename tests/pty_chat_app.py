"""A minimal app around the real ChatInput, run under a pty by test_chat_input_pty.py.

Every submitted text is appended (JSON, one per line) to the file named by argv[1]; a
line "ready" is written first once the prompt has focus.
"""

from __future__ import annotations

import json
import sys

from textual.app import App, ComposeResult

from qwentui.ui.widgets.chat_input import ChatInput


class PtyChat(App):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def compose(self) -> ComposeResult:
        yield ChatInput(id="prompt")

    def on_mount(self) -> None:
        self.query_one(ChatInput).focus()
        self.call_after_refresh(self._write, "ready")

    def _write(self, text: str) -> None:
        with open(self.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(text) + "\n")

    def on_chat_input_submitted(self, message: ChatInput.Submitted) -> None:
        self._write(message.text)
        message.input.accept(message.text)


if __name__ == "__main__":
    PtyChat(sys.argv[1]).run()
