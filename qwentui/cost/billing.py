"""How a provider bills one up-period: rounded up to whole units, with a minimum.

`cost.granularity` ("second" | "minute" | "hour") is the unit; `cost.minimum` the least
billed per period. Billing is anchored at the period's start (the box boots or the
engine launches), so with per-hour billing a box started at 10:00:30 is paid until
11:00:30, then 12:00:30, ... All arithmetic is on whole milliseconds so money stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from qwentui.errors import UsageError

GRANULARITIES = {"second": 1, "minute": 60, "hour": 3600}


@dataclass(frozen=True)
class Billing:
    """A billing model: `unit_ms` per step (None = exact, the ledger's pre-billing rows)."""

    unit_ms: int | None = 1000
    minimum_ms: int = 0

    @classmethod
    def of(cls, granularity: str = "second", minimum_s: float = 0.0) -> "Billing":
        if granularity not in GRANULARITIES:
            raise UsageError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
        if minimum_s < 0:
            raise UsageError(f"minimum must not be negative, got {minimum_s!r}")
        return cls(GRANULARITIES[granularity] * 1000, int(round(minimum_s * 1000)))

    @classmethod
    def from_config(cls, cfg: Any) -> "Billing":
        cost = cfg.cost
        return cls.of(getattr(cost, "granularity", "second"), getattr(cost, "minimum", 0.0))

    @property
    def name(self) -> str:
        for name, seconds in GRANULARITIES.items():
            if self.unit_ms == seconds * 1000:
                return name
        return "exact" if self.unit_ms is None else f"{self.unit_ms}ms"

    @property
    def rounds(self) -> bool:
        """True when billing differs from the exact span (a unit above 1 s or a minimum)."""
        return (self.unit_ms or 0) > 1000 or self.minimum_ms > 0

    def billed_ms(self, ms: int) -> int:
        """The billed length of an up-period `ms` long (0 stays 0: nothing ran)."""
        if ms <= 0:
            return 0
        unit = self.unit_ms
        rounded = ms if not unit else -(-ms // unit) * unit
        return max(rounded, self.minimum_ms)

    def billed_seconds(self, start: float, stop: float) -> float:
        return self.billed_ms(max(0, _ms(stop) - _ms(start))) / 1000

    def paid_until(self, start: float, now: float) -> float:
        """When what is billed for a period that began at `start` and is still up runs out."""
        return (_ms(start) + self.billed_ms(max(1, _ms(now) - _ms(start)))) / 1000

    def stop_before_boundary(self, start: float, earliest: float, margin: float) -> tuple[float, float]:
        """(stop at, paid until): the last moment ≥ `earliest` to stop, `margin` seconds
        before a billing boundary, so a stop that takes `margin` still lands in paid time."""
        x_ms = max(1, _ms(earliest) - _ms(start))
        margin_ms = _ms(margin)
        while True:
            paid = _ms(start) + self.billed_ms(x_ms)
            if paid - margin_ms >= _ms(earliest):
                return (paid - margin_ms) / 1000, paid / 1000
            x_ms = paid - _ms(start) + 1

    def cost(self, price: Decimal | None, start: float, stop: float) -> Decimal | None:
        if price is None:
            return None
        return price * self.billed_ms(max(0, _ms(stop) - _ms(start))) / 3_600_000


EXACT = Billing(unit_ms=None)


def _ms(ts: float) -> int:
    return int(round(ts * 1000))


class BoundaryHold:
    """idle.stop_at = "billing-boundary": once the idle timeout has passed, keep the engine
    up until `margin` before the billed time runs out (that time is paid for anyway).

    Called by the watchdog with its idle deadline on its own (monotonic) clock; answers
    (stop at, paid until) on that clock, or None when billing does not round (per second,
    no minimum) or nothing is being billed.
    """

    def __init__(self, billing: Billing, margin: float, anchor: Callable[[float], float | None],
                 clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.billing, self.margin = billing, margin
        self._anchor, self._clock, self._wall = anchor, clock, wall

    @classmethod
    def for_runtime(cls, cfg: Any, idle_cfg: Any, meter: Any, clock: Callable[[], float],
                    wall: Callable[[], float]) -> "BoundaryHold | None":
        if getattr(idle_cfg, "stop_at", "timeout") != "billing-boundary":
            return None
        margin = getattr(idle_cfg, "boundary_margin", 0.0) or cfg.engine.stop_grace + 30.0

        def anchor(at: float) -> float | None:
            span = meter.paid_until(at)
            return None if span is None else span[0]

        return cls(Billing.from_config(cfg), margin, anchor, clock, wall)

    def __call__(self, deadline: float) -> tuple[float, float] | None:
        if not self.billing.rounds:
            return None
        offset = self._wall() - self._clock()
        earliest = deadline + offset
        start = self._anchor(earliest)
        if start is None:
            return None
        stop, paid = self.billing.stop_before_boundary(start, earliest, self.margin)
        return stop - offset, paid - offset
