"""Chat message widgets: the user's prompt and a streaming assistant answer.

`AssistantMessage.feed` only buffers; a per-frame timer moves buffered text into the
widgets, so a fast 20k-token answer costs ~15 updates a second, not one per token.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Collapsible, Static

from qwentui.chat.client import Collector, ContentDelta, Event, ReasoningDelta, Usage
from qwentui.chat.conversation import DONE, FAILED, STOPPED, STREAMING
from qwentui.ui.widgets.segments import SegmentedText, render_markdown, render_plain

FRAME_S = 1 / 10


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: thick $accent;
        background: $boost;
    }
    """

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)
        self.text = text


def format_stats(*, tokens: int, approx: bool, seconds: float | None, usage: Usage | None = None,
                 finish_reason: str = "") -> str:
    """'45 tok (40 reasoning) · 12 prompt · 150.0 tok/s · 0.3 s'."""
    parts = [f"{'~' if approx else ''}{tokens} tok"]
    if usage is not None:
        if usage.reasoning_tokens:
            parts[0] += f" ({usage.reasoning_tokens} reasoning)"
        parts.append(f"{usage.prompt_tokens} prompt")
    if seconds and seconds > 0 and tokens > 1:
        parts.append(f"{(tokens - 1) / seconds:.1f} tok/s")  # decode rate: first token to last
        parts.append(f"{seconds:.1f} s")
    if finish_reason == "length":
        parts.append("cut at max_tokens")
    return " · ".join(parts)


class AssistantMessage(Vertical):
    """One answer: dimmed reasoning in a Collapsible above the Markdown answer and a stats line."""

    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 1 0 0 0; }
    AssistantMessage #reasoning { display: none; margin: 0; padding: 0; border: none;
        background: $background; }
    AssistantMessage.-has-reasoning #reasoning { display: block; }
    AssistantMessage #reasoning Contents { padding: 0 0 0 2; }
    AssistantMessage #reasoning-body { color: $text-muted; text-style: italic; }
    AssistantMessage #answer { padding: 0 1; }
    AssistantMessage #stats { color: $text-muted; padding: 0 1; }
    AssistantMessage.-failed #stats, AssistantMessage.-stopped #stats { color: $warning; }
    """

    def __init__(self, *, thinking: bool, clock: Callable[[], float]) -> None:
        super().__init__()
        self.thinking = thinking
        self.status = STREAMING
        self.chunks = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.collected = Collector(timed=False)  # usage, finish reason, cache hit: the chat layer's reading
        self._clock = clock
        self._reasoning = SegmentedText(render_plain, id="reasoning-body")
        self._answer = SegmentedText(render_markdown, id="answer")
        self._auto_collapsed = False
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Collapsible(title="Thinking…", collapsed=False, id="reasoning"):
            yield self._reasoning
        yield self._answer
        yield Static("waiting for the engine…", id="stats", markup=False)

    def on_mount(self) -> None:
        self._timer = self.set_interval(FRAME_S, self.flush)

    @property
    def reasoning_text(self) -> str:
        return self._reasoning.text

    @property
    def content_text(self) -> str:
        return self._answer.text

    @property
    def usage(self) -> Usage | None:
        return self.collected.usage

    @property
    def finish_reason(self) -> str:
        return self.collected.finish_reason

    @property
    def cached(self) -> bool:
        """A CacheHit came first: the prompt cache answered, not the engine."""
        return self.collected.cached

    # -- called by the chat pane's worker, once per event: buffering only
    def feed(self, event: Event) -> None:
        self.collected.add(event)
        if isinstance(event, (ReasoningDelta, ContentDelta)):
            now = self._clock()
            self.first_at = now if self.first_at is None else self.first_at
            self.last_at = now
            self.chunks += 1
            (self._reasoning if isinstance(event, ReasoningDelta) else self._answer).append(event.text)

    # -- per frame
    async def flush(self, final: bool = False) -> None:
        if self.reasoning_text:
            self.add_class("-has-reasoning")
        if self.content_text and self.reasoning_text and not self._auto_collapsed:
            self._auto_collapsed = True  # the answer started: fold the thinking away
            self.query_one("#reasoning", Collapsible).collapsed = True
        await self._reasoning.flush(final)
        await self._answer.flush(final)
        if self.status == STREAMING and self.chunks:
            self._set_stats(format_stats(tokens=self.chunks, approx=True, seconds=self.seconds))

    @property
    def seconds(self) -> float | None:
        """First token to last token."""
        if self.first_at is None or self.last_at is None:
            return None
        return self.last_at - self.first_at

    def _set_stats(self, text: str) -> None:
        self.query_one("#stats", Static).update(text)

    @property
    def tokens(self) -> int:
        return self.usage.completion_tokens if self.usage else self.chunks

    @property
    def tokens_per_s(self) -> float | None:
        seconds = self.seconds
        return (self.tokens - 1) / seconds if seconds and self.tokens > 1 else None

    async def finish(self, status: str = DONE, error: str = "") -> None:
        """End the stream: final text, reasoning title, stats or the failure note."""
        if self._timer is not None:
            self._timer.stop()
        self.status = status
        await self.flush(final=True)
        reasoning = self.query_one("#reasoning", Collapsible)
        if self.reasoning_text:
            count = f"{self.usage.reasoning_tokens} tokens" if self.usage and self.usage.reasoning_tokens else ""
            reasoning.title = "Reasoning" + (f" ({count})" if count else "")
        stats = format_stats(tokens=self.tokens, approx=self.usage is None, seconds=self.seconds,
                             usage=self.usage, finish_reason=self.finish_reason)
        if self.cached:
            stats = f"⚡ cached · {stats}"
        if status == STOPPED:
            stats = f"■ stopped · {stats}"
        elif status == FAILED:
            kept = " — partial answer kept" if self.content_text or self.reasoning_text else ""
            stats = f"✖ {error}{kept}"
        self.set_class(status == FAILED, "-failed")
        self.set_class(status == STOPPED, "-stopped")
        self._set_stats(stats)

    def toggle_reasoning(self) -> bool:
        """Expand/collapse the reasoning; False when there is none."""
        if not self.reasoning_text:
            return False
        reasoning = self.query_one("#reasoning", Collapsible)
        reasoning.collapsed = not reasoning.collapsed
        self._auto_collapsed = True  # the user decides from now on
        return True
