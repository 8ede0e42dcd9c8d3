"""One-line header: engine state and phase, model, base URL, SIMULATED badge, extra fields.

Data-driven: `status` takes the supervisor's frozen EngineStatus (or anything with the
same attributes); other panes publish short fields ("idle 12:30", "¥1.80/h") with
`set_field(key, text)` and they appear on the right in insertion order. When the line is
short of room the base URL goes first, then the model, then the "qwentui" label; the
state, the SIMULATED badge and the fields always stay.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

_STATE_STYLE = {
    "ready": ("●", "bold green"),
    "starting": ("◐", "bold yellow"),
    "stopping": ("◑", "bold yellow"),
    "stopped": ("○", "bold"),
    "crashed": ("✖", "bold red"),
    "external": ("◆", "bold cyan"),
    "unhealthy": ("▲", "bold red"),  # ready, but SGLang marked itself UnHealthy
}


def state_name(status: Any) -> str:
    """'ready', 'starting', ... from an EngineStatus (enum or str state); 'external' for None."""
    if status is None:
        return "external"
    state = getattr(status, "state", "")
    return str(getattr(state, "value", state)).lower()


def is_ready(status: Any) -> bool:
    return status is None or state_name(status) == "ready"


def blocked_reason(status: Any) -> str:
    """Why the chat input is disabled, or "" when the engine takes requests."""
    state = state_name(status)
    if state in ("ready", "external"):
        return ""
    phase = getattr(status, "phase", "") or ""
    error = getattr(status, "error", None)
    hint = getattr(status, "hint", None)
    tip = f" — {hint}" if hint else ""
    if state == "starting":
        return f"engine starting{': ' + phase if phase else ''}… chat opens when it is ready"
    if state == "stopping":
        return "engine stopping…"
    if state == "crashed":
        return f"engine crashed: {error or 'see the engine log'}{tip}"
    if getattr(status, "attached", False):
        return f"not connected{': ' + error if error else ''}{tip} — ctrl+p → Start engine to retry"
    reason = getattr(status, "stop_reason", None)
    why = f": {error}" if error else (f" ({reason})" if reason else "")
    return f"engine stopped{why}{tip} — ctrl+p → Start engine"


class EngineHeader(Widget):
    DEFAULT_CSS = """
    EngineHeader { dock: top; height: 1; background: $panel; color: $foreground; }
    """

    status: reactive[Any] = reactive(None, always_update=True)
    fields: reactive[tuple[tuple[str, str], ...]] = reactive((), always_update=True)

    def set_field(self, key: str, text: str | Text) -> None:
        """Add/replace a right-hand field; an empty text removes it."""
        items = dict(self.fields)
        if text:
            items[key] = text
        else:
            items.pop(key, None)
        self.fields = tuple(items.items())

    def render(self) -> Text:
        """Fields by priority: at any width the state (+ phase), the SIMULATED badge and the
        right-hand fields (idle countdown, cost) stay; the base URL goes first, then the
        model, then the "qwentui" label."""
        right = Text("  ", no_wrap=True).join(  # a field may be a styled Text (idle warning)
            Text(text) if isinstance(text, str) else text for _, text in self.fields)
        parts = self._parts()
        while True:
            left = _join(parts)
            gap = self.size.width - left.cell_len - right.cell_len - 1  # keep the last column blank
            droppable = [part for part in parts if part[0] > 0]
            if gap >= (2 if right.plain else 0) or not droppable:
                break
            parts.remove(max(droppable, key=lambda part: part[0]))
        if right.plain:
            left.append(" " * max(gap, 2))
            left.append_text(right)
        return left

    def _parts(self) -> list[tuple[int, str, Text]]:
        """(drop rank, separator before it, text) in display order; rank 0 always stays, the
        highest rank is dropped first."""
        status = self.status
        state = state_name(status)
        if state == "ready" and getattr(status, "unhealthy", False):
            state = "unhealthy"
        symbol, style = _STATE_STYLE.get(state, ("?", "bold"))
        parts = [(1, "", Text(" qwentui ", style="bold reverse"))]
        if getattr(status, "simulated", False) or getattr(status, "kind", "") == "sim":
            parts.append((0, " ", Text(" SIMULATED ", style="bold black on yellow")))
        label = "ATTACHED" if getattr(status, "attached", False) and state == "ready" else state.upper()
        engine = Text(f"{symbol} {label}", style=style)
        phase = getattr(status, "phase", "")
        if phase and state == "starting":
            engine.append(f" {phase}", style="yellow")
        parts.append((0, " ", engine))
        for rank, value in ((2, getattr(status, "model", "")), (3, getattr(status, "base_url", ""))):
            if value:
                parts.append((rank, "  │  ", Text(str(value))))
        return parts


def _join(parts: list[tuple[int, str, Text]]) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    for index, (_, separator, text) in enumerate(parts):
        if index:
            line.append(separator, style="dim" if "│" in separator else "")
        elif not text.plain.startswith(" "):
            line.append(" ")  # the label was dropped: one blank before the state
        line.append_text(text)
    return line
