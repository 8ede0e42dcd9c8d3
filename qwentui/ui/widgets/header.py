"""One-line header: engine state and phase, model, base URL, SIMULATED badge, extra fields.

Data-driven: `status` takes the supervisor's frozen EngineStatus (or anything with the
same attributes); other panes publish short fields ("idle 12:30", "¥1.80/h") with
`set_field(key, text)` and they appear on the right in insertion order.
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
        status = self.status
        state = state_name(status)
        symbol, style = _STATE_STYLE.get(state, ("?", "bold"))
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" qwentui ", style="bold reverse")
        line.append(" ")
        if getattr(status, "simulated", False) or getattr(status, "kind", "") == "sim":
            line.append(" SIMULATED ", style="bold black on yellow")
            line.append(" ")
        label = "ATTACHED" if getattr(status, "attached", False) and state == "ready" else state.upper()
        line.append(f"{symbol} {label}", style=style)
        phase = getattr(status, "phase", "")
        if phase and state == "starting":
            line.append(f" {phase}", style="yellow")
        for value in (getattr(status, "model", ""), getattr(status, "base_url", "")):
            if value:
                line.append("  │  ", style="dim")
                line.append(str(value))
        right = Text("  ", no_wrap=True).join(  # a field may be a styled Text (idle warning)
            Text(text) if isinstance(text, str) else text for _, text in self.fields)
        room = self.size.width - line.cell_len - right.cell_len - 1
        if right.plain and room > 0:
            line.append(" " * room)
            line.append_text(right)
        elif right.plain:
            line.append("  │  ", style="dim")
            line.append_text(right)
        return line
