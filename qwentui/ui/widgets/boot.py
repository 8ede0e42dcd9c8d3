"""Start-up / crash panel, shown in the chat area while the engine boots or after it crashed.

Starting: the ordered start-up phases (✓ done, a spinner on the current one, · to come),
a progress bar and the elapsed time. Crashed: the error, the hint, the last log lines and
the keys that restart the engine or open the full log. Hidden in every other state.

Data-driven like the header: set `status` to the supervisor's frozen EngineStatus. Time
comes from the injected clock (the app's), so snapshots are deterministic; the elapsed
time is measured from the moment a start was first seen, not from the supervisor's
`started_at` (that is wall time, the app's clock need not be). One timer, at 1 s, runs
only while the engine is starting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from qwentui.engine.phases import PHASES
from qwentui.idle.watchdog import clock_text
from qwentui.ui.widgets.header import state_name

SPINNER = "◐◓◑◒"
LOG_LINES = 8
BAR_WIDTH = 24
SHOWN = ("starting", "crashed")
_KEYS = (("restart-engine", "F5", "restart"), ("engine-log", "F6", "full log"))


def key_for(app: Any, binding_id: str, default: str) -> str:
    """How the key of the app binding `binding_id` is shown ("F5"), after the user's `ui.keymap`."""
    keymap = dict(getattr(getattr(getattr(app, "cfg", None), "ui", None), "keymap", None) or {})
    for binding in getattr(type(app), "BINDINGS", ()):
        if isinstance(binding, Binding) and binding.id == binding_id:
            if binding.key_display and binding_id not in keymap:
                return binding.key_display
            key = keymap.get(binding_id, binding.key).split(",")[0]
            display = app.get_key_display(Binding(key, binding.action))
            return display.upper() if re.fullmatch(r"f\d+", display) else display
    return default


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    filled = round(width * done / total) if total else 0
    bar = Text()
    bar.append("━" * filled, style="green")
    bar.append("━" * (width - filled), style="dim")
    return bar


class BootPanel(Widget):
    DEFAULT_CSS = """
    BootPanel { display: none; height: auto; margin: 0 1; padding: 0 1;
        border: round $warning; border-title-color: $warning; }
    BootPanel.-crashed { border: round $error; border-title-color: $error; }
    """

    status: reactive[Any] = reactive(None, always_update=True, init=False)

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._run: Any = None  # started_at of the start being timed
        self._anchor: float | None = None  # our clock when that start was first seen
        self._took: float | None = None  # elapsed when it stopped starting (ready or crashed)
        self._crashed_starting = False  # the crash came before the engine was ready
        self._timer: Timer | None = None

    @property
    def ticking(self) -> bool:
        """The 1 s timer runs (only while the engine is starting)."""
        return self._timer is not None

    def watch_status(self, old: Any, status: Any) -> None:
        state = state_name(status)
        self._follow_clock(status, state, state_name(old) if old is not None else "")
        self.set_class(state == "crashed", "-crashed")
        self.border_title = "Engine crashed" if state == "crashed" else "Engine start-up"
        self.display = state in SHOWN
        if self.parent is not None:  # the chat hides its welcome and "blocked" lines meanwhile
            self.parent.set_class(self.display, "-booting")
        self._tick_while(state == "starting")
        self.refresh(layout=True)

    def _follow_clock(self, status: Any, state: str, before: str) -> None:
        if state == "starting":
            run = getattr(status, "started_at", None)
            if self._anchor is None or run != self._run or self._took is not None:
                self._run, self._anchor, self._took = run, self._clock(), None
        elif self._anchor is not None and self._took is None:
            self._took = self._clock() - self._anchor
        if state == "crashed" and before != "crashed":
            self._crashed_starting = before == "starting"

    def _tick_while(self, starting: bool) -> None:
        if starting and self._timer is None:
            self._timer = self.set_interval(1.0, self.refresh)
        elif not starting and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def elapsed(self) -> float | None:
        """Seconds since this start was first seen (frozen once it is ready or crashed)."""
        if self._anchor is None:
            return None
        return self._took if self._took is not None else max(0.0, self._clock() - self._anchor)

    # ------------------------------------------------------------------ render

    def render(self) -> RenderableType:
        status = self.status
        if state_name(status) == "crashed":
            return Group(*self._crashed(status))
        return Group(*self._starting(status))

    def _title(self, text: str, style: str, status: Any) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(text, style=style)
        model = getattr(status, "model", "")
        if model:
            line.append(f" · {model}")
        if getattr(status, "simulated", False) or getattr(status, "kind", "") == "sim":
            line.append("  ")
            line.append(" SIMULATED ", style="bold black on yellow")
        return line

    def _starting(self, status: Any) -> list[Text]:
        elapsed = self.elapsed() or 0.0
        spin = SPINNER[int(elapsed) % len(SPINNER)]
        lines = [self._title("Starting the engine", "bold", status)]
        if getattr(status, "attached", False):
            lines.append(Text(f"{spin} connecting to {getattr(status, 'base_url', '')}…", style="bold yellow"))
            lines.append(Text(f"{clock_text(elapsed)} elapsed", style="dim"))
            return lines
        phase = getattr(status, "phase", "") or PHASES[0]
        current = PHASES.index(phase) if phase in PHASES else 0
        for index, name in enumerate(PHASES):
            if index < current:
                lines.append(Text.assemble(("✓ ", "bold green"), name))
            elif index == current:
                lines.append(Text.assemble((f"{spin} ", "bold yellow"), (f"{name}…", "bold")))
            else:
                lines.append(Text(f"· {name}", style="dim"))
        last = len(PHASES) - 1  # "ready" is where the bar ends
        bar = progress_bar(current, last)
        bar.append(f"  {current}/{last}  ")
        bar.append(f"{clock_text(elapsed)} elapsed", style="bold")
        lines.append(bar)
        lines.append(Text(f"the chat opens when it is ready · {self._key(1)} engine log", style="dim"))
        return lines

    def _crashed(self, status: Any) -> list[Text]:
        took = self.elapsed()
        after = f" after {clock_text(took)}" if took is not None and self._crashed_starting else ""
        lines = [self._title(f"✖ Engine crashed{after}", "bold red", status)]
        error = getattr(status, "error", None) or "the engine exited"
        lines.append(Text(error, style="red"))
        hint = getattr(status, "hint", None)
        if hint:
            lines.append(Text.assemble(("hint: ", "bold"), hint))
        tail = [line for line in getattr(status, "log_tail", ()) or ()
                if line.strip() and error not in line][-LOG_LINES:]  # the log repeats the error last
        if tail:
            lines.append(Text("last log lines:", style="bold"))
            for line in tail:
                lines.append(Text(f"  {line}", style="dim", no_wrap=True, overflow="ellipsis"))
        keys = Text()
        keys.append(self._key(0), style="bold reverse")
        keys.append(" restart  ·  ")
        keys.append(self._key(1), style="bold reverse")
        keys.append(" full log")
        lines.append(keys)
        return lines

    def _key(self, which: int) -> str:
        binding_id, default, _ = _KEYS[which]
        return key_for(self.app, binding_id, default)
