"""What one chat answer cost: its busy seconds × price, shared with the requests that ran
alongside it (an estimate: the box bills by time, not by answer).

Fed the engine's running-requests gauge while the answer streams; between two readings
the answer pays 1/n of the time, n = requests running (at least itself). Alone on the
engine an answer costs exactly what the ledger bills for that time, and answers that
overlap split it, so their sum is the ledger's cost of the busy time.
"""

from __future__ import annotations

from decimal import Decimal

from qwentui.cost.periods import MS_PER_HOUR, to_ms


class AnswerCost:
    """One answer from `start` (request sent) to `finish` (stream ended)."""

    def __init__(self, start: float, price: Decimal | None) -> None:
        self.start, self.price = start, price
        self._points: list[tuple[int, float]] = [(to_ms(start), 1.0)]  # (ms, requests running from then)

    def sample(self, at: float, running: float | None) -> None:
        """The engine's running + queued requests at `at` (None/NaN: unknown, keep the last)."""
        if running is None or running != running:
            return
        ms = to_ms(at)
        if ms >= self._points[-1][0]:
            self._points.append((ms, max(1.0, float(running))))

    def share_ms(self, end: float) -> Decimal:
        """This answer's share of the busy milliseconds up to `end`."""
        end_ms = to_ms(end)
        total = Decimal(0)
        for (t0, n), (t1, _) in zip(self._points, [*self._points[1:], (end_ms, 0.0)]):
            lo, hi = min(t0, end_ms), min(t1, end_ms)
            if hi > lo:
                total += Decimal(hi - lo) / Decimal(str(n))
        return total

    def cost(self, end: float) -> Decimal | None:
        return None if self.price is None else self.price * self.share_ms(end) / MS_PER_HOUR


def cost_text(cost: Decimal | None, currency: str) -> str:
    """'≈¥0.0012 (estimate)' for a message's stats line; '' when the price is unknown."""
    from qwentui.cost.prices import format_money

    return "" if cost is None else f"≈{format_money(cost, currency, places=4)} (estimate)"


def requests_now(metrics: object) -> float | None:
    """running + queued from engine metrics (telemetry EngineMetrics or alike); None if unknown."""
    if metrics is None or not getattr(metrics, "available", True):
        return None
    values = [getattr(metrics, name, None) for name in ("running", "queued")]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    return sum(numbers) if numbers else None
