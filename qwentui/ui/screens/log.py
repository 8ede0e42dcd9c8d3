"""F6 (ctrl+l): the engine log — file tail loaded in a thread, new lines as they arrive, / search, f follow."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from rich.highlighter import Highlighter
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Log, Static

from qwentui.ui.screens.base import OperatorScreen

MAX_LINES = 20_000
TAIL_BYTES = 4 * 1024 * 1024  # enough for MAX_LINES of SGLang output; a 5 MB log loads in ~0.1 s
POLL_S = 0.5  # only while the screen is open; a stat() when nothing changed, no repaint


class LogFeed:
    """The engine log: the tail of its file once, then what was appended (rotation → reread).
    Without a file (attached, tests), the supervisor's in-memory tail."""

    def __init__(self, path: Path | None, lines: Callable[[], list[str]] = list) -> None:
        self.path = path
        self._lines = lines
        self._pos = 0
        self._ino: int | None = None
        self._partial = b""
        self._memory: list[str] = []

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path) if self.path is not None else None
        except OSError:
            return None

    def initial(self, max_lines: int = MAX_LINES) -> list[str]:
        """Blocking (run in a thread): the last `max_lines` lines."""
        st = self._stat()
        if st is None:
            self._memory = list(self._lines())
            return self._memory[-max_lines:]
        start = max(0, st.st_size - TAIL_BYTES)
        with open(self.path, "rb") as fh:
            fh.seek(start)
            data = fh.read(st.st_size - start)
        self._pos, self._ino, self._partial = start + len(data), st.st_ino, b""
        lines = self._split(data)
        if start > 0 and lines:
            lines = lines[1:]  # the first line was cut by the seek
        return lines[-max_lines:]

    def poll(self) -> tuple[bool, list[str]]:
        """(reset, lines): new lines since the last call; reset=True means replace everything."""
        st = self._stat()
        if st is None:
            if self.path is not None:
                return False, []
            now = list(self._lines())
            if now == self._memory:
                return False, []
            self._memory = now
            return True, now[-MAX_LINES:]
        if st.st_ino != self._ino or st.st_size < self._pos:
            return True, self.initial()
        if st.st_size == self._pos:
            return False, []
        with open(self.path, "rb") as fh:
            fh.seek(self._pos)
            data = fh.read(min(st.st_size - self._pos, TAIL_BYTES))
        self._pos += len(data)
        return False, self._split(data)

    def _split(self, data: bytes) -> list[str]:
        data = self._partial + data
        head, sep, tail = data.rpartition(b"\n")
        self._partial = tail if sep else data
        if not sep:
            return []
        return head.decode("utf-8", "replace").split("\n")


class MatchHighlighter(Highlighter):
    def __init__(self, pattern: re.Pattern[str] | None = None) -> None:
        self.pattern = pattern

    def highlight(self, text: Text) -> None:
        if self.pattern is not None:
            text.highlight_regex(self.pattern, style="bold black on yellow")


class LogScreen(OperatorScreen):
    DEFAULT_CSS = """
    LogScreen #log { height: 1fr; }
    LogScreen #log-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    LogScreen #log-search { display: none; }
    LogScreen.-searching #log-search { display: block; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="screen-back"),
        Binding("slash", "search", "Search", id="log-search"),
        Binding("n", "next_match(1)", "Next", id="log-next"),
        Binding("N", "next_match(-1)", "Prev", id="log-prev", show=False),
        Binding("f", "toggle_follow", "Follow", id="log-follow"),
        Binding("j", "scroll(1)", "Down", id="log-down", show=False),
        Binding("k", "scroll(-1)", "Up", id="log-up", show=False),
        Binding("g", "top", "Top", id="log-top", show=False),
        Binding("G", "bottom", "Bottom", id="log-bottom", show=False),
    ]
    TITLE_TEXT = "Engine log"

    def __init__(self, feed: LogFeed, *, poll_s: float = POLL_S, title: str = "") -> None:
        super().__init__()
        self.feed = feed
        self.poll_s = poll_s
        self.follow = True
        self._pattern: re.Pattern[str] | None = None
        self._match: int | None = None
        self._loaded = False
        self._title = title or (f"Engine log — {feed.path}" if feed.path else "Engine log")

    def compose_body(self) -> ComposeResult:
        yield Log(max_lines=MAX_LINES, highlight=True, id="log")
        yield Static("", id="log-status", markup=False)
        yield Input(placeholder="search (Enter finds, esc closes)", id="log-search")

    def on_mount(self) -> None:
        self.set_title_text(self._title)
        log = self.log_widget
        log.highlighter = MatchHighlighter()
        log.focus()
        self._status("loading…")
        self._load()

    @property
    def log_widget(self) -> Log:
        return self.query_one("#log", Log)

    @work(thread=True, exclusive=True, group="log-load", exit_on_error=False, description="load engine log")
    def _load(self) -> None:
        lines = self.feed.initial()
        self.app.call_from_thread(self._loaded_lines, lines)

    def _loaded_lines(self, lines: list[str]) -> None:
        self.log_widget.write_lines(lines, scroll_end=self.follow)
        self._loaded = True
        self._status()
        self.set_interval(self.poll_s, self._poll)

    def _poll(self) -> None:
        reset, lines = self.feed.poll()
        if reset:
            self.log_widget.clear()
        if lines or reset:
            self.log_widget.write_lines(lines, scroll_end=self.follow)
            self._status()

    def _status(self, extra: str = "") -> None:
        log = self.log_widget
        parts = [f"{log.line_count:,} lines", "following the tail" if self.follow else "paused (f follows)"]
        if self._pattern is not None:
            hits = self._hits()
            where = f"{hits.index(self._match) + 1}/{len(hits)}" if self._match in hits else f"{len(hits)} found"
            parts.append(f"/{self._pattern.pattern}: {where}" if hits else f"/{self._pattern.pattern}: no match")
        if extra:
            parts.append(extra)
        self.query_one("#log-status", Static).update(" · ".join(parts))

    def _hits(self) -> list[int]:
        pattern = self._pattern
        return [i for i, line in enumerate(self.log_widget.lines) if pattern and pattern.search(line)]

    # ----- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.has_class("-searching"):
            self.remove_class("-searching")
            self.log_widget.focus()
            return
        self.dismiss(None)

    def action_search(self) -> None:
        self.add_class("-searching")
        self.query_one("#log-search", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        self.remove_class("-searching")
        self.log_widget.focus()
        if not text:
            self._set_pattern(None)
            return
        self._set_pattern(re.compile(re.escape(text), re.IGNORECASE))
        self._match = self.log_widget.scroll_offset.y - 1
        self.action_next_match(1)

    def _set_pattern(self, pattern: re.Pattern[str] | None) -> None:
        self._pattern, self._match = pattern, None
        log = self.log_widget
        log.highlighter.pattern = pattern
        log.notify_style_update()  # drops the cached, highlighted lines
        log.refresh()
        self._status()

    def action_next_match(self, step: int) -> None:
        hits = self._hits()
        if not hits:
            self._status()
            return
        here = self.log_widget.scroll_offset.y if self._match is None else self._match
        later = [i for i in hits if (i > here if step > 0 else i < here)]
        self._match = (later[0] if step > 0 else later[-1]) if later else (hits[0] if step > 0 else hits[-1])
        self._set_follow(False)
        log = self.log_widget
        log.scroll_to(y=max(0, self._match - log.size.height // 3), animate=False)
        self._status()

    def _set_follow(self, follow: bool) -> None:
        self.follow = follow
        self.log_widget.auto_scroll = follow
        if follow:
            self.log_widget.scroll_end(animate=False)

    def action_toggle_follow(self) -> None:
        self._set_follow(not self.follow)
        self._status()

    def action_scroll(self, lines: int) -> None:
        self._set_follow(False)
        self.log_widget.scroll_relative(y=lines, animate=False)
        self._status()

    def action_top(self) -> None:
        self._set_follow(False)
        self.log_widget.scroll_home(animate=False)
        self._status()

    def action_bottom(self) -> None:
        self._set_follow(True)
        self._status()
