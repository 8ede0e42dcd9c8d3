"""The report's pictures: cost per day split into busy / idle / cold start, and the what-if
curve. Data here is pure; `draw_*` take a plotext-like `plt` (the `plotext` module for the
terminal, `PlotextPlot.plt` in the console), so both show the same chart.

A day's busy cost is its billed time that overlaps the recorded busy intervals, its
cold-start cost the time from each engine launch to ready; idle is the rest of what the
day cost (including what billing rounded up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any, Sequence

from qwentui.cost import periods
from qwentui.cost.ledger import SessionRow

SERIES = ("busy", "idle", "cold start")
COLORS = ("green", "orange", "red")


@dataclass(frozen=True)
class DayCost:
    day: str  # YYYY-MM-DD
    busy: Decimal
    idle: Decimal
    cold: Decimal

    @property
    def total(self) -> Decimal:
        return self.busy + self.idle + self.cold


def _overlap_cost(row: SessionRow, spans: Sequence[tuple[float, float]], a: float, b: float) -> Decimal:
    total = Decimal(0)
    lo_row, hi_row = max(row.start, a), min(row.end, b)
    for s, e in spans:
        lo, hi = max(s, lo_row), min(e, hi_row)
        if hi > lo:
            total += periods.cost_of(row.price_per_hour, lo, hi) or 0
    return total


def daily_costs(rows: Sequence[SessionRow], busy: Sequence[tuple[float, float]],
                starts: Sequence[tuple[float, float]], start: float, end: float,
                tz: tzinfo | None = None) -> list[DayCost]:
    """Every day of [start, end) with what it cost, split busy / idle / cold start."""
    out = []
    for key, a, b in periods.split(start, end, "day", tz):
        total = sum((r.cost_between(a, b) or Decimal(0) for r in rows), Decimal(0))
        cold = sum((_overlap_cost(r, starts, a, b) for r in rows), Decimal(0))
        used = sum((_overlap_cost(r, busy, a, b) for r in rows), Decimal(0))
        used = min(used, max(Decimal(0), total - cold))  # busy while starting counts as cold start
        out.append(DayCost(key, used, max(Decimal(0), total - cold - used), cold))
    return out


def with_activity(rep: Any, busy: Sequence[tuple[float, float]], starts: Sequence[tuple[float, float]],
                  cfg: Any, *, now: float, measured: Sequence[float] = ()) -> Any:
    """The report with its pictures' data: cost per day split, and the what-if replay over
    the period's activity with the default timeouts (when a cold start was ever measured)."""
    from dataclasses import replace

    from qwentui.cost import whatif
    from qwentui.cost.billing import Billing

    daily = daily_costs(rep.sessions, busy, starts, rep.start, rep.end, rep.tz) if rep.sessions else []
    result = None
    cold = whatif.median([b - a for a, b in starts] or list(measured))
    if busy and cold is not None:
        prices = [r.price_per_hour for r in rep.sessions if r.price_per_hour is not None]
        lo, hi = periods.to_ms(rep.start), periods.to_ms(min(rep.end, max(now, rep.start)))
        spans = [(max(lo, periods.to_ms(a)), min(hi, periods.to_ms(b))) for a, b in busy]
        result = whatif.run([s for s in spans if s[0] <= s[1]],
                            whatif.parse_timeouts(whatif.DEFAULT_TIMEOUTS),
                            cold_start_ms=int(round(cold * 1000)), billing=Billing.from_config(cfg),
                            price=prices[-1] if prices else None, window=(lo, hi),
                            current_ms=int(round(cfg.idle.timeout * 1000)) if cfg.idle.enabled else None)
    return replace(rep, daily=tuple(daily), recorded=bool(busy), budget_month=cfg.cost.budget_month,
                   whatif=result)


# -- drawing -----------------------------------------------------------------------------

def draw_days(plt: Any, days: Sequence[DayCost], *, currency: str, budget_month: float = 0.0,
              recorded: bool = True) -> None:
    """Stacked bars per day (day of month on x), a legend, and the daily share of the month's
    budget as a line when one is set."""
    plt.clear_data()
    labels = [d.day[-2:] for d in days]
    if recorded:
        data = [[float(getattr(d, f)) for d in days] for f in ("busy", "idle", "cold")]
        plt.stacked_bar(labels, data, labels=list(SERIES), color=list(COLORS), width=0.6)
        title = f"Cost per day ({currency}): busy / idle / cold start"
    else:
        plt.bar(labels, [float(d.total) for d in days], label="cost", color="orange", width=0.6)
        title = f"Cost per day ({currency}; no activity record: not split)"
    if budget_month > 0 and days:
        daily = budget_month / len(days)
        plt.hline(daily, "red")
        title += f" · budget {budget_month:g}/month = {daily:.2f}/day"
    plt.title(title)
    plt.xlabel("day of month")
    # plotext picks string ticks in a hash-dependent order: fix them (every day up to 12, else 1, 5, 10, …)
    picks = [i for i, label in enumerate(labels) if len(labels) <= 12 or int(label) == 1 or int(label) % 5 == 0]
    plt.xticks([i + 1 for i in picks], [labels[i] for i in picks])


def draw_what_if(plt: Any, result: Any, *, currency: str) -> None:
    """Cost (left axis) and cold starts (right axis) against the timeout."""
    from qwentui.cost.whatif import timeout_label

    plt.clear_data()
    xs = list(range(1, len(result.rows) + 1))
    costs = [float(r.cost if r.cost is not None else r.billed_hours) for r in result.rows]
    plt.plot(xs, costs, label=f"cost ({currency})" if result.price is not None else "billed hours",
             marker="dot", color="orange")
    plt.plot(xs, [r.cold_starts for r in result.rows], label="cold starts", marker="dot", color="cyan",
             yside="right")
    if result.oracle.cost is not None:
        plt.hline(float(result.oracle.cost), "green")
    plt.xticks(xs, [timeout_label(r.timeout_ms) for r in result.rows])
    plt.title("What-if: cost and cold starts vs idle timeout (green: hindsight optimum)")
    plt.xlabel("idle timeout")


def terminal_chart(draw, *args: Any, width: int = 100, height: int = 20, **kwargs: Any) -> str:
    """A chart drawn with the `plotext` module, as text with colours, for `qwentui report`."""
    import os

    import plotext

    plotext.clear_figure()
    plotext.plotsize(width, height)
    plotext.theme("clear")  # the terminal's own background, series still coloured
    draw(plotext, *args, **kwargs)
    if os.environ.get("NO_COLOR"):
        plotext.clear_color()  # the user asked for no colour
    text = plotext.build()
    plotext.clear_figure()
    return text
