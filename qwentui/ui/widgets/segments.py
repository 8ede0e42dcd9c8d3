"""Long streamed text as a few frozen segments plus one live tail.

Textual re-arranges the whole screen on every layout change, and its Markdown widget
makes one widget per block, so a 20k-token answer (hundreds of blocks) made every
frame slower. Here the settled text is cut at paragraph boundaries into ~2 KB
segments, each one Static whose height Textual caches; only the short tail is
re-rendered per frame. Code fences cut by a forced split are closed and reopened.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

MIN_SEGMENT = 1200
MAX_SEGMENT = 3000
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _fence_after(line: str, fence: str | None) -> str | None:
    """The open fence marker after `line` (None = outside code)."""
    match = _FENCE.match(line)
    if not match:
        return fence
    marker = match.group(1)
    if fence is None:
        return marker
    if marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip().strip(marker[0]):
        return None
    return fence


def take_segment(text: str, min_size: int = MIN_SEGMENT, max_size: int = MAX_SEGMENT) -> tuple[str, str] | None:
    """Split off a settled first segment: (segment, rest), or None to keep waiting.

    Cuts after the first blank line (outside code) at or past `min_size`; past `max_size`
    without one, cuts at a line end (closing the open fence in the segment and reopening
    it in the rest), or inside an overlong line at a space. Every cut consumes text, so
    repeated calls always end.
    """
    if len(text) < min_size:
        return None
    fence: str | None = None
    opener, opened_at = "", 0
    pos = 0
    while (end := text.find("\n", pos)) >= 0:
        line = text[pos:end]
        before = fence
        fence = _fence_after(line, fence)
        pos = end + 1
        if before is None and fence is not None:
            opener, opened_at = line, pos
        if fence is None and pos >= min_size and (not line.strip() or pos >= max_size):
            return text[:pos], text[pos:]
        if fence is not None and pos >= max_size and pos > opened_at:
            return _close(text[:pos], fence), opener + "\n" + text[pos:]
    if len(text) <= max_size or pos == len(text):
        return None  # nothing overlong; or only complete lines, waiting inside a fence
    limit = max(max_size, pos + 1)
    cut = text.rfind(" ", pos, limit) + 1 or limit
    if fence is None:
        return text[:cut], text[cut:]
    return _close(text[:cut] + "\n", fence), opener + "\n" + text[cut:]


def _close(segment: str, fence: str) -> str:
    return segment + fence + "\n"


def render_markdown(text: str) -> RenderableType:
    from rich.markdown import Markdown  # ~90 ms of markdown-it: not before the first answer

    return Markdown(text, code_theme="monokai", hyperlinks=True)


def render_plain(text: str) -> RenderableType:
    return Text(text.strip("\n"))


class SegmentedText(Vertical):
    """`append` buffers; `flush` (once per frame) freezes settled segments and redraws the tail."""

    DEFAULT_CSS = """
    SegmentedText { height: auto; }
    SegmentedText > Static { height: auto; }
    SegmentedText > #tail.-empty { display: none; }
    """

    def __init__(self, render: Callable[[str], RenderableType] = render_markdown, *,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._render_text = render
        self._parts: list[str] = []  # str += on an attribute would copy the whole text per token
        self._tail = ""
        self._dirty = False

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def compose(self) -> ComposeResult:
        yield Static("", id="tail", classes="-empty")

    def append(self, text: str) -> None:
        self._parts.append(text)
        self._tail += text
        self._dirty = True

    async def flush(self, final: bool = False) -> None:
        if not self._dirty:
            return
        self._dirty = False
        frozen: list[Static] = []
        while (split := take_segment(self._tail)) is not None:
            segment, self._tail = split
            frozen.append(Static(self._render_text(segment), classes="segment"))
        if final and self._tail.strip():
            frozen.append(Static(self._render_text(self._tail), classes="segment"))
            self._tail = ""
        tail = self.query_one("#tail", Static)
        if frozen:
            await self.mount_all(frozen, before=tail)
        tail.set_class(not self._tail.strip(), "-empty")
        tail.update(self._render_text(self._tail) if self._tail.strip() else "")
