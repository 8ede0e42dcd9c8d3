"""GPU pane: per-GPU bars (VRAM engine/other/free, util, temperature, power), sparklines for
util and tokens/s, and an engine box (running/queued, KV cache, tok/s).

Presentation only: it renders the telemetry `Snapshot` it is given.

    pane.snapshot = snap        # each telemetry tick (a new frozen object)

Every row is its own small widget holding a comparable value in a reactive, so a tick
repaints only the rows whose text changed; an idle box repaints almost nothing. While
the pane is not displayed (a hidden tab at 80×24) a tick only extends the sparkline
history; the rows catch up when the pane is shown.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget

from qwentui.telemetry.na import NA
from qwentui.telemetry.nvml import GpuSample
from qwentui.telemetry.sampler import Snapshot

LABEL = 6
SUFFIX = 10  # right-aligned readings, so the bars line up
SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 120


# -- presentation helpers (thresholds, units) ------------------------------------------------

def gib(n: Any) -> str:
    """Compact bytes for a narrow pane: '17.0G', '512M'."""
    if n is NA or n is None:
        return "n/a"
    if n >= 1024**3:
        return f"{n / 1024**3:.1f}G"
    return f"{n / 1024**2:.0f}M"


def level_style(value: Any, warn: float, bad: float) -> str:
    if value is NA:
        return "dim"
    return "red" if value >= bad else "yellow" if value >= warn else "green"


def temp_style(celsius: Any) -> str:
    return level_style(celsius, 75, 85)


def power_style(fraction: Any) -> str:
    return level_style(fraction, 0.8, 0.95)


def kv_style(fraction: Any) -> str:
    return level_style(fraction, 0.7, 0.9)


def _frac(part: Any, whole: Any) -> Any:
    if part is NA or whole is NA or not whole:
        return NA
    return max(0.0, min(1.0, part / whole))


@dataclass(frozen=True)
class Bar:
    """A labelled bar: segments of (fraction, char, style), then a right-aligned suffix."""

    label: str
    segments: tuple[tuple[float, str, str], ...]
    suffix: str
    suffix_style: str = ""


def render_bar(bar: Bar, width: int) -> Text:
    text = Text(bar.label.ljust(LABEL), style="bold")
    suffix = " " + bar.suffix.rjust(SUFFIX)
    cells = max(0, width - LABEL - len(suffix))
    used, total = 0, 0.0
    for fraction, char, style in bar.segments:
        total += fraction
        n = max(0, min(cells, round(total * cells)) - used)
        text.append(char * n, style=style)
        used += n
    text.append("░" * (cells - used), style="dim")
    text.append(suffix, style=bar.suffix_style)
    return text


def spark(values: Iterable[float], width: int, top: float | None = None) -> str:
    """Newest values at the right; `top` fixes the scale (100 for %), else the max."""
    data = list(values)[-width:] if width > 0 else []
    peak = top if top else max(data, default=0.0) or 1.0
    last = len(SPARK) - 1
    return "".join(SPARK[max(0, min(last, round(v / peak * last)))] for v in data)


# -- row widgets ---------------------------------------------------------------------------

class Line(Widget):
    """One row of text; repaints only when the Text differs."""

    DEFAULT_CSS = "Line { height: auto; }"
    text: reactive[Text] = reactive(Text())

    def __init__(self, text: Text | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        if text is not None:
            self.set_reactive(Line.text, text)

    def watch_text(self, old: Text, new: Text) -> None:
        if old.plain.count("\n") != new.plain.count("\n") or not old.plain or not new.plain:
            self.refresh(layout=True)  # the height changes only with the number of lines

    def render(self) -> Text:
        return self.text


class Meter(Widget):
    DEFAULT_CSS = "Meter { height: 1; }"
    bar: reactive[Bar | None] = reactive(None)

    def render(self) -> Text:
        return render_bar(self.bar, self.size.width) if self.bar else Text()


class Spark(Widget):
    """A labelled sparkline row; `data` is (label, values, top, suffix).

    New values arrive every tick, but the row repaints only when the visible text
    changes (an idle engine's flat line doesn't)."""

    DEFAULT_CSS = "Spark { height: 1; }"
    data: reactive[tuple[str, tuple[float, ...], float | None, str]] = reactive(("", (), None, ""), repaint=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: Text | None = None

    def _text(self) -> Text:
        label, values, top, suffix = self.data
        room = max(0, self.size.width - LABEL - (SUFFIX + 1 if suffix else 0))
        text = Text(label.ljust(LABEL), style="bold")
        line = spark(values, room, top)
        text.append(line, style="cyan")
        if suffix:
            text.append(" " * (room - len(line)) + " " + suffix.rjust(SUFFIX))
        return text

    def watch_data(self) -> None:
        if self._text() != self._shown:
            self.refresh()

    def render(self) -> Text:
        self._shown = self._text()
        return self._shown


# -- one GPU ---------------------------------------------------------------------------------

class GpuCard(Vertical):
    DEFAULT_CSS = """
    GpuCard { height: auto; }
    GpuCard.-lost Meter, GpuCard.-lost Spark, GpuCard.-lost .vram-detail { display: none; }
    """

    def __init__(self, sample: GpuSample, util_history: Iterable[float]) -> None:
        super().__init__()
        self._pending: tuple[GpuSample, tuple[float, ...]] | None = (sample, tuple(util_history))
        # kept as attributes: a selector query per row per tick costs more than the repaint
        self.title_line = Line(classes="title")
        self.vram, self.vram_detail = Meter(classes="vram"), Line(classes="vram-detail")
        self.util, self.util_spark = Meter(classes="util"), Spark(classes="util-spark")
        self.temp, self.power = Meter(classes="temp"), Meter(classes="power")

    def on_mount(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._apply(*pending)

    def compose(self) -> ComposeResult:
        yield from (self.title_line, self.vram, self.vram_detail, self.util, self.util_spark, self.temp, self.power)

    def show(self, g: GpuSample, util_history: Iterable[float]) -> None:
        if self._pending is not None:  # not mounted yet: on_mount applies the newest
            self._pending = (g, tuple(util_history))
        else:
            self._apply(g, util_history)

    def _apply(self, g: GpuSample, util_history: Iterable[float]) -> None:
        lost = g.status != "ok"
        self.set_class(lost, "-lost")
        title = Text(f"GPU {g.index} ", style="bold")
        title.append(g.name)
        if g.simulated:
            title.append("  SIMULATED", style="bold reverse yellow")
        if g.gpu_class != "other" and g.gpu_class not in g.name:
            title.append(f" · {g.gpu_class}", style="dim")
        if lost:
            title.append("\nGPU lost" if g.status == "lost" else "\nNVML error", style="bold red")
            title.append(f": {g.message}" if g.message else "", style="red")
        self.title_line.text = title
        if lost:
            return
        self.vram.bar = _vram_bar(g)
        self.vram_detail.text = _vram_detail(g)
        util = g.util_gpu_pct
        self.util.bar = Bar("util", ((_frac(util, 100) or 0.0, "█", "green"),),
                            f"{util:>3}%" if util is not NA else "n/a")
        self.util_spark.data = ("", tuple(util_history), 100.0, "")
        self.temp.bar = _temp_bar(g)
        self.power.bar = _power_bar(g)


def _vram_bar(g: GpuSample) -> Bar:
    total = g.memory_total_bytes
    engine = _frac(g.engine_memory_bytes, total)
    other = _frac(g.other_memory_bytes, total)
    used = g.memory_used_bytes
    suffix = "n/a" if used is NA or total is NA else f"{gib(used).removesuffix('G')}/{gib(total)}"
    return Bar("VRAM", ((engine or 0.0, "█", "cyan"), (other or 0.0, "▓", "magenta")), suffix)


def _vram_detail(g: GpuSample) -> Text:
    text = Text(" " * LABEL)
    text.append("█", style="cyan")
    estimated = "~" if g.engine_memory_source == "baseline" else ""  # growth since launch, not per-PID
    text.append(f" engine {estimated}{gib(g.engine_memory_bytes)}  ")
    text.append("▓", style="magenta")
    text.append(f" other {gib(g.other_memory_bytes)}")
    return text


def _temp_bar(g: GpuSample) -> Bar:
    t = g.temperature_c
    style = temp_style(t)
    return Bar("temp", ((_frac(t, 100) or 0.0, "█", style),), f"{t}°C" if t is not NA else "n/a", style)


def _power_bar(g: GpuSample) -> Bar:
    draw, limit = g.power_mw, g.power_limit_mw
    fraction = _frac(draw, limit)
    style = power_style(fraction)
    if draw is NA:
        suffix = "n/a"
    elif limit is NA:
        suffix = f"{draw / 1000:.0f}W"
    else:
        suffix = f"{draw / 1000:.0f}/{limit / 1000:.0f}W"
    return Bar("power", ((fraction or 0.0, "█", style),), suffix, style)


# -- the pane --------------------------------------------------------------------------------

def gpu_state_text(snap: Snapshot | None) -> Text | None:
    """The pane's message when there are no GPU cards to show, else None."""
    if snap is None:
        return Text("GPU: waiting for the first reading…", style="dim")
    gpu = snap.gpu
    if gpu.status == "ok" and gpu.gpus:
        return None
    if snap.simulated and gpu.status in ("no-nvml", "no-gpu"):
        return Text("no GPU detected (simulated engine)", style="bold yellow")
    title = {"no-nvml": "NVML unavailable", "no-gpu": "no GPU detected"}.get(gpu.status, "NVML error")
    text = Text(title, style="bold yellow" if gpu.status != "error" else "bold red")
    if gpu.message:
        text.append(f"\n{gpu.message}", style="dim")
    return text


class GpuPane(Vertical):
    """The GPU pane. Set `snapshot` to each new telemetry Snapshot."""

    DEFAULT_CSS = """
    GpuPane { height: auto; padding: 0 1; }
    GpuPane #gpu-state { display: none; }
    GpuPane.-no-gpu #gpu-state { display: block; }
    GpuPane.-no-gpu #gpu-cards { display: none; }
    GpuPane #gpu-cards { height: auto; }
    GpuPane #engine-title { margin-top: 1; }
    GpuPane.-no-metrics .engine-row { display: none; }
    """

    # repaint=False: the rows repaint themselves when their own value changes
    snapshot: reactive[Snapshot | None] = reactive(None, init=False, repaint=False)

    def __init__(self, *, history: int = HISTORY, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._util: dict[int, deque[float]] = {}
        self._tps: deque[float] = deque(maxlen=history)
        self._history = history
        self._state = Line(Text("GPU: waiting for the first reading…", style="dim"), id="gpu-state")
        self._cards = Vertical(id="gpu-cards")
        self._engine_title = Line(id="engine-title")
        self._counts = Line(id="engine-counts", classes="engine-row")
        self._kv = Meter(id="engine-kv", classes="engine-row")
        self._tps_spark = Spark(id="engine-tps", classes="engine-row")

    def compose(self) -> ComposeResult:
        yield from (self._state, self._cards, self._engine_title, self._counts, self._kv, self._tps_spark)

    def on_mount(self) -> None:
        self.add_class("-no-gpu")
        self._show(self.snapshot)

    def set_history(self, snapshots: Iterable[Snapshot]) -> None:
        """Preload the sparklines (e.g. from Sampler.history) and show the newest."""
        last = None
        for snap in snapshots:
            self._remember(snap)
            last = snap
        if last is not None:
            self.set_reactive(GpuPane.snapshot, last)
            self._show(last)

    def watch_snapshot(self, snap: Snapshot | None) -> None:
        if snap is not None:
            self._remember(snap)
        self._show(snap)

    def _remember(self, snap: Snapshot) -> None:
        for g in snap.gpu.gpus:
            util = g.util_gpu_pct
            self._util.setdefault(g.index, deque(maxlen=self._history)).append(0.0 if util is NA else float(util))
        tps = snap.tokens_per_s
        self._tps.append(0.0 if tps is NA else float(tps))

    def on_show(self) -> None:
        if self.snapshot is not None:  # before the first reading the waiting line stays alone
            self._show(self.snapshot)

    def _show(self, snap: Snapshot | None) -> None:
        if not self.is_mounted or not self.region:  # not displayed: on_show catches up
            return
        state = gpu_state_text(snap)
        self.set_class(state is not None, "-no-gpu")
        if state is not None:
            self._state.text = state
        elif snap is not None:
            self._show_cards(snap)
        self._show_engine(snap)

    def _show_cards(self, snap: Snapshot) -> None:
        box = self._cards
        cards = [c for c in box.children if isinstance(c, GpuCard)]
        wanted = len(snap.gpu.gpus)
        if len(cards) != wanted:  # GPUs appear or vanish rarely: rebuild then
            box.remove_children()
            box.mount_all(GpuCard(g, self._util.get(g.index, ())) for g in snap.gpu.gpus)
            return
        for card, g in zip(cards, snap.gpu.gpus):
            card.show(g, self._util.get(g.index, ()))

    def _show_engine(self, snap: Snapshot | None) -> None:
        title = Text("ENGINE", style="bold")
        if snap is not None and snap.simulated:
            title.append("  SIMULATED", style="bold reverse yellow")
        engine = snap.engine if snap is not None else None
        available = engine is not None and engine.available
        self.set_class(not available, "-no-metrics")
        if engine is not None and not available:
            title.append("\nmetrics unavailable", style="yellow")
            title.append(f": {engine.error}", style="dim")
        self._engine_title.text = title
        if not available:
            return
        self._counts.text = counts_text(engine)
        kv = engine.token_usage
        self._kv.bar = Bar(
            "KV", ((_frac(kv, 1.0) or 0.0, "█", kv_style(kv)),), f"{kv * 100:>3.0f}%" if kv is not NA else "n/a",
            kv_style(kv))
        tps = snap.tokens_per_s
        self._tps_spark.data = (
            "tok/s", tuple(self._tps), None, f"{tps:.0f}" if tps is not NA else "n/a")


def counts_text(engine: Any) -> Text:
    def num(v: Any) -> str:
        return "n/a" if v is NA else f"{v:.0f}"

    text = Text("run ", style="bold")
    text.append(num(engine.running))
    text.append("  queue ", style="bold")
    text.append(num(engine.queued), style="yellow" if engine.queued is not NA and engine.queued > 0 else "")
    if engine.cache_hit_rate is not NA:
        text.append("  hit ", style="bold")
        text.append(f"{engine.cache_hit_rate * 100:.0f}%")
    return text
