"""The prompt's cursor blinks while someone types and holds still when nobody does."""

from __future__ import annotations

from textual.app import App, ComposeResult

from qwentui.ui.widgets.chat_input import ChatInput
from tests.waits import wait_until


class QuickInput(ChatInput):
    BLINK_FOR_S = 0.2


class _Host(App):
    def compose(self) -> ComposeResult:
        yield QuickInput()


async def test_cursor_stops_blinking_when_idle_and_resumes_on_a_key():
    app = _Host()
    async with app.run_test() as pilot:
        prompt = app.query_one(QuickInput)
        prompt.focus()
        assert prompt.cursor_blink
        await wait_until(pilot, lambda: not prompt.cursor_blink)
        await pilot.press("a")
        assert prompt.cursor_blink and prompt.text == "a"
        await wait_until(pilot, lambda: not prompt.cursor_blink)
