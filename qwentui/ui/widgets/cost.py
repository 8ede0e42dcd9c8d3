"""Cost pane: price per hour, session cost ticking, today/month, ¥/1K tokens, idle waste,
cache savings and budget bars. Presentation only: it renders the `CostSnapshot` it is given.

    pane.snapshot = meter.snapshot()          # each telemetry tick
    header.set_field("cost", header_text(snap))

A new snapshot arrives every tick, but the pane repaints only when its text changes:
money is shown to the cent and running clocks to the minute, so an idle box repaints
it about every 20 s at ¥1.8/h. While the pane is not displayed (a hidden tab at 80×24)
it does no work at all and catches up when shown.
"""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from qwentui.config import format_duration
from qwentui.cost.meter import CostSnapshot
from qwentui.cost.prices import format_money, format_price

BAR_WIDTH = 12
SIMULATED = "SIMULATED"
LABEL = 11


def _money(snap: CostSnapshot, amount: Decimal | None, places: int = 2) -> str:
    return format_money(amount, snap.currency, places=places, trim=False)


def _span(seconds: float) -> str:
    """A running clock to the minute ('45m', '1h15m', '<1m'): seconds would repaint every tick."""
    if seconds < 60:
        return "<1m" if seconds > 0 else "0m"
    return format_duration(float(int(seconds) // 60 * 60))


def header_text(snap: CostSnapshot | None) -> str:
    """Short header field: '¥2.5/h · session ¥0.42' (or 'price unknown')."""
    if snap is None:
        return ""
    if not snap.price_known:
        return "cost: price unknown"
    return f"{format_price(snap.rate_per_hour, snap.currency)}/h · session {_money(snap, snap.session_cost)}"


def budget_fraction(spent: Decimal | None, budget: Decimal | None) -> float | None:
    if budget is None or budget <= 0 or spent is None:
        return None
    return float(spent / budget)


def budget_bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """'██████░░░░ 60%' coloured green, yellow from 75%, red when spent."""
    filled = max(0, min(width, round(fraction * width)))
    style = "red" if fraction >= 1 else "yellow" if fraction >= 0.75 else "green"
    bar = Text()
    bar.append("█" * filled, style=style)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {fraction * 100:.0f}%", style=style)
    return bar


class CostPane(Widget):
    """The cost pane. Set `snapshot` to a new frozen `CostSnapshot` to refresh it."""

    DEFAULT_CSS = """
    CostPane { height: auto; padding: 0 1; }
    """

    # repaint=False: watch_snapshot repaints only when the text changed
    snapshot: reactive[CostSnapshot | None] = reactive(None, repaint=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: Text | None = None  # what the terminal has; None = stale
        self._built: tuple[CostSnapshot | None, Text] | None = None

    def watch_snapshot(self) -> None:
        if not self.is_mounted or not self.region:  # not displayed: catch up in on_show
            self._shown = None
            return
        text = self.render()
        if text != self._shown:
            lines = text.plain.count("\n")
            self.refresh(layout=self._shown is None or lines != self._shown.plain.count("\n"))
            self._shown = text

    def on_show(self) -> None:
        self._shown = self.render()
        self.refresh(layout=True)

    def render(self) -> Text:
        snap = self.snapshot
        built = self._built
        if built is None or built[0] is not snap:  # Textual renders twice per change (height, lines)
            self._built = built = (snap, self._text(snap))
        return built[1]

    def _text(self, snap: CostSnapshot | None) -> Text:
        if snap is None:
            return Text("cost: waiting for the first reading…", style="dim")
        text = self._title(snap)
        for label, value in self._rows(snap):
            text.append("\n")
            text.append(label.ljust(LABEL), style="bold")
            text.append_text(value if isinstance(value, Text) else Text(value))
        if snap.ledger_error:
            text.append("\n")
            text.append(f"ledger: {snap.ledger_error}", style="red")
        return text

    def _title(self, snap: CostSnapshot) -> Text:
        title = Text("COST ", style="bold")
        gpu = snap.gpu_class or snap.gpu_model or "no GPU"
        if snap.price_known:
            title.append(f"{format_price(snap.rate_per_hour, snap.currency)}/h", style="bold")
        else:
            title.append("?/h", style="bold yellow")
        title.append(f" · {gpu} · {snap.basis} billing", style="dim")
        if not snap.price_known:
            title.append("\nprice unknown: set cost.price_per_hour", style="yellow")
        elif SIMULATED in (snap.gpu_model or ""):  # the demo's made-up price (runtime.SIM_GPU_CLASS)
            title.append(f"\n{SIMULATED}: priced as a {gpu}, no GPU here", style="bold yellow")
        return title

    def _rows(self, snap: CostSnapshot) -> list[tuple[str, Text | str]]:
        more = "" if snap.price_known else "+?"  # earlier sessions are known, the live one is not
        engine = "running" if snap.engine_running else "last" if snap.engine_seconds else "not started"
        rows: list[tuple[str, Text | str]] = [
            ("session", f"{_money(snap, snap.session_cost)}"
                        f"  engine {engine}{' ' + _span(snap.engine_seconds) if snap.engine_seconds else ''}"),
            ("box", f"{_money(snap, snap.box_since_boot_cost)}  up {_span(snap.box_seconds)}"),
            ("today", f"{_money(snap, snap.today_cost)}{more}  month {_money(snap, snap.month_cost)}{more}"),
            ("projected", f"{_money(snap, snap.projected_month)} this month"),
            ("per 1K tok", self._per_1k(snap)),
            ("idle", Text(f"{_money(snap, snap.idle_cost)} wasted ({_span(snap.idle_seconds)})",
                          style="yellow" if snap.idle_cost else "")),
        ]
        if snap.cache_hits:
            rows.append(("cache", self._cache(snap)))
        for name, spent, budget in (("sess. cap", snap.session_cost, snap.budget_session),
                                    ("month cap", snap.month_cost, snap.budget_month)):
            fraction = budget_fraction(spent, budget)
            if fraction is not None:
                bar = budget_bar(fraction)
                bar.append(f" of {format_money(budget, snap.currency)}")
                rows.append((name, bar))
        return rows

    @staticmethod
    def _per_1k(snap: CostSnapshot) -> str:
        if snap.per_1k_tokens is None:
            return "no tokens generated yet"
        return f"{_money(snap, snap.per_1k_tokens, 4)}  ({snap.tokens_out:,} tok out)"

    @staticmethod
    def _cache(snap: CostSnapshot) -> Text:
        asked = snap.cache_hits + snap.requests
        rate = f" ({snap.cache_hits * 100 / asked:.0f}%)" if asked else ""
        saved = "" if snap.cache_saved_cost is None else f" ≈ {_money(snap, snap.cache_saved_cost)} saved"
        return Text(f"{snap.cache_hits} hits{rate}{saved}", style="green")
