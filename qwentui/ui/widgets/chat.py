"""The chat pane: message list + prompt, one streaming request at a time.

The pane owns the conversation and one exclusive worker per answer. Stop = cancel
the worker, which closes the HTTP stream (SGLang aborts the request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import WorkerCancelled, WorkerFailed

from qwentui.chat.client import ChatClient, ChatError
from qwentui.chat.conversation import DONE, FAILED, STOPPED, STREAMING, Conversation, Turn
from qwentui.ui.widgets.boot import BootPanel
from qwentui.ui.widgets.chat_input import ChatInput
from qwentui.ui.widgets.messages import AssistantMessage, UserMessage

WELCOME = ("Ask Qwen anything. Enter sends · ctrl+j new line · ctrl+t thinking on/off · "
           "esc stops an answer · ctrl+p all commands")


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #messages { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    ChatPane #welcome { color: $text-muted; padding: 1 1 0 1; }
    ChatPane #blocked { display: none; color: $warning; padding: 0 1; height: auto; }
    ChatPane.-blocked #blocked { display: block; }
    ChatPane.-booting #welcome, ChatPane.-booting #blocked { display: none; }  /* the boot panel says it */
    """

    blocked: reactive[str] = reactive("")
    """Why the engine cannot take a message now ("" = it can)."""
    thinking: reactive[bool] = reactive(True)
    busy: reactive[bool] = reactive(False)
    """An answer is being generated."""

    @dataclass
    class RequestStarted(Message):
        """A chat request was sent (idle tracking: console activity)."""

    @dataclass
    class RequestEnded(Message):
        """A chat request ended; `turn` is the finished (or stopped/failed) answer."""

        turn: Turn

    def __init__(self, *, client_factory: Callable[[], ChatClient] | None = None, thinking: bool = True,
                 system_prompt: str = "", max_tokens: int | None = None,
                 clock: Callable[[], float] = time.monotonic, id: str | None = None) -> None:
        super().__init__(id=id)
        self.client_factory = client_factory
        self.conversation = Conversation(system_prompt=system_prompt)
        self.max_tokens = max_tokens
        self._clock = clock
        self.set_reactive(ChatPane.thinking, thinking)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="messages"):
            yield Static(WELCOME, id="welcome", markup=False)
        yield BootPanel(clock=self._clock, id="boot")
        yield Static("", id="blocked", markup=False)
        yield ChatInput(id="prompt")

    def on_mount(self) -> None:
        self.query_one("#messages").anchor()
        self._update_input()

    @property
    def streaming(self) -> bool:
        return self.busy

    @property
    def boot(self) -> BootPanel:
        """The start-up / crash panel (the app sets its `status`)."""
        return self.query_one("#boot", BootPanel)

    @property
    def prompt(self) -> ChatInput:
        return self.query_one("#prompt", ChatInput)

    def watch_blocked(self) -> None:
        self._update_input()

    def watch_thinking(self) -> None:
        self._update_input()

    def watch_busy(self) -> None:
        self._update_input()

    def _update_input(self) -> None:
        if not self.is_mounted:
            return
        prompt = self.prompt
        if prompt.disabled and not self.blocked:
            prompt.disabled = False
            prompt.focus()  # the engine just became usable: type right away
        prompt.disabled = bool(self.blocked)
        self.set_class(bool(self.blocked), "-blocked")
        self.query_one("#blocked", Static).update(self.blocked)
        mode = "thinking ON" if self.thinking else "thinking off"
        prompt.border_title = f"Message · {mode} (ctrl+t)"
        prompt.border_subtitle = "generating… esc stops" if self.streaming else ""

    # ------------------------------------------------------------------ sending

    def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        event.stop()
        if self.send(event.text):
            event.input.accept(event.text)

    def send(self, text: str) -> bool:
        """Send `text` as the next user message; False (nothing sent) when not possible."""
        if not text.strip() or self.blocked or self.streaming or self.client_factory is None:
            if self.streaming:
                self.notify("An answer is still streaming: press esc to stop it first.", severity="warning")
            return False
        self.conversation.add(Turn("user", text))
        index = self.conversation.add(Turn("assistant", "", thinking=self.thinking, status=STREAMING))
        answer = AssistantMessage(thinking=self.thinking, clock=self._clock)
        messages = self.query_one("#messages", VerticalScroll)
        mounted = messages.mount_all([UserMessage(text), answer])
        messages.anchor()
        history = self.conversation.history()
        self.busy = True
        self._worker = self.run_worker(self._answer(answer, index, history, mounted), group="chat",
                                       exclusive=True, exit_on_error=False, description="chat answer")
        self.post_message(self.RequestStarted())
        return True

    async def _answer(self, answer: AssistantMessage, index: int, history: list[dict],
                      mounted: Awaitable) -> None:
        status, error = DONE, ""
        try:
            await mounted
            client = self.client_factory()
            async for event in client.stream_chat(history, thinking=answer.thinking, max_tokens=self.max_tokens):
                answer.feed(event)
        except asyncio.CancelledError:
            status = STOPPED
            raise
        except ChatError as exc:
            status, error = FAILED, exc.message
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the pane stuck "generating"
            status, error = FAILED, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            await self._record(answer, index, status, error)

    async def _record(self, answer: AssistantMessage, index: int, status: str, error: str) -> None:
        try:
            await answer.finish(status, error)
        finally:
            turn = self.conversation.update(
                index, content=answer.content_text, reasoning=answer.reasoning_text, status=status, error=error,
                finish_reason=answer.finish_reason, usage=answer.usage, seconds=answer.seconds,
                tokens_per_s=answer.tokens_per_s, cached=answer.cached)
            self.busy = False
            self.post_message(self.RequestEnded(turn))

    # ------------------------------------------------------------------ actions

    def stop(self) -> bool:
        """Stop the answer being generated; False when nothing is streaming."""
        if not self.streaming:
            return False
        self.workers.cancel_group(self, "chat")
        return True

    def toggle_thinking(self) -> None:
        self.thinking = not self.thinking

    def toggle_reasoning(self) -> bool:
        for answer in reversed(list(self.query(AssistantMessage))):
            if answer.toggle_reasoning():
                return True
        return False

    async def new_chat(self) -> None:
        if self.stop():
            try:
                await self._worker.wait()
            except (WorkerCancelled, WorkerFailed):
                pass
        self.conversation.clear()
        messages = self.query_one("#messages", VerticalScroll)
        await messages.remove_children()
        await messages.mount(Static(WELCOME, id="welcome", markup=False))
        self.prompt.focus()
