"""Snapshots of the console's chat (pytest-textual-snapshot) at 80×24 and 120×40.

Deterministic: a scripted server (or the simulator's deterministic text), a step clock
(tok/s derived from it), no wall-clock text on screen. Update with
`pytest tests/test_ui_chat_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from qwentui.chat.client import ChatClient
from qwentui.config import Config
from qwentui.engine.status import EngineState
from qwentui.ui.app import make_app
from tests.chatfakes import ScriptedServer, StepClock
from tests.simproc import running_sim
from tests.test_ui_chat import READY
from tests.waits import wait_until


def _app(server: ScriptedServer, status=READY, clock=None):
    return make_app(Config(), client=server.client(), status=status, clock=clock or StepClock())


def _steady(pilot) -> None:
    """A blinking cursor would make the screenshot depend on timing."""
    pilot.app.chat.prompt.cursor_blink = False


def _chat(*messages: str, then: tuple[str, ...] = ()):
    async def run_before(pilot) -> None:
        app = pilot.app
        _steady(pilot)
        for text in messages:
            app.chat.prompt.insert(text)
            await pilot.press("enter")
            await wait_until(pilot, lambda: not app.chat.streaming, timeout=15)
        if then:
            await pilot.press(*then)
        await pilot.pause(0.2)

    return run_before


def test_answer_with_collapsed_reasoning_80x24(snap_compare):
    """You should see the header (qwentui, SIMULATED badge, ● READY, Qwen/Qwen3-1.7B, the URL), the
    user message "hello" with an accent bar, a collapsed "▶ Reasoning (5 tokens)" line, the answer
    "Hello! How can I help you today?" with "Hello!" in bold (Markdown), the stats line
    "9 tok (5 reasoning) · 12 prompt · 100.0 tok/s · 0.1 s", the empty prompt titled
    "Message · thinking ON (ctrl+t)" and the footer with Send / Newline / History / Quit / ...."""
    assert snap_compare(_app(ScriptedServer()), terminal_size=(80, 24), run_before=_chat("hello"))


def test_reasoning_expanded_two_turns_120x40(snap_compare):
    """You should see two exchanges at 120×40: "hello" answered with its reasoning collapsed, then
    "again" whose reasoning block is expanded with ctrl+r ("▼ Reasoning (5 tokens)" followed by the
    dimmed italic "The user greets me. I should answer kindly."), each answer with its stats line."""
    assert snap_compare(_app(ScriptedServer()), terminal_size=(120, 40),
                        run_before=_chat("hello", "again", then=("ctrl+r",)))


def test_streaming_in_progress_120x40(snap_compare):
    """You should see an answer mid-stream: "▼ Thinking…" expanded with the first reasoning words
    "The user", the live stats "~1 tok", the prompt's bottom border saying "generating… esc stops"
    and "esc Stop" in the footer."""
    gate = asyncio.Event()  # never opened: the stream waits after the first reasoning chunk

    async def run_before(pilot) -> None:
        app = pilot.app
        _steady(pilot)
        app.chat.prompt.insert("tell me something")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "~1 tok" in str(app.query_one("#stats").render()))
        await pilot.pause(0.2)

    assert snap_compare(_app(ScriptedServer(gate=gate)), terminal_size=(120, 40), run_before=run_before)


def test_engine_starting_disables_input_80x24(snap_compare):
    """You should see "◐ STARTING loading weights" in the header and, instead of the welcome text, the
    "Engine start-up" box (✓ launching, "◐ loading weights…", the later phases dimmed, 1/5, "0:00 elapsed",
    "the chat opens when it is ready") above a dimmed, disabled prompt."""
    starting = dataclasses.replace(READY, state=EngineState.STARTING, phase="loading weights")
    assert snap_compare(_app(ScriptedServer(), status=starting), terminal_size=(80, 24), run_before=_steady)


def test_context_error_inline_80x24(snap_compare):
    """You should see the user message "a very long prompt" and, in place of an answer, the warning
    line "✖ The input (70000 tokens) is longer than the model's context length (40960 tokens)."; the
    prompt is empty and enabled."""
    error = {"object": "error", "message": "The input (70000 tokens) is longer than the model's context "
             "length (40960 tokens).", "type": "BadRequestError", "param": None, "code": 400}
    server = ScriptedServer(reply=lambda body: httpx.Response(400, json=error))
    assert snap_compare(_app(server), terminal_size=(80, 24), run_before=_chat("a very long prompt"))


def test_simulator_answer_thinking_off_120x40(snap_compare):
    """You should see, against the real simulator, the prompt title "Message · thinking off (ctrl+t)",
    the user message "hi there" and the simulator's deterministic answer starting "(simulated)" with
    NO reasoning block (thinking off reached the engine), then "~"-less exact token counts from the
    usage chunk; no tok/s (the clock is frozen)."""
    with running_sim() as sim:
        client = ChatClient(sim.base_url)
        # the header shows the status' URL: keep it fixed, the sim's port is random
        app = make_app(Config(), client=client, status=READY, clock=lambda: 0.0)
        assert snap_compare(app, terminal_size=(120, 40), run_before=_sim_chat("hi there"))


def _sim_chat(text: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        _steady(pilot)
        app.chat.toggle_thinking()  # what ctrl+t does, without its toast
        app.chat.prompt.insert(text)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming, timeout=15)
        await pilot.pause(0.2)

    return run_before
