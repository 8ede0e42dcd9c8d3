"""How a provider bills one up-period: rounded up to whole units, with a minimum.

`cost.granularity` ("second" | "minute" | "hour") is the unit; `cost.minimum` the least
billed per period. Billing is anchored at the period's start (the box boots or the
engine launches), so with per-hour billing a box started at 10:00:30 is paid until
11:00:30, then 12:00:30, ... All arithmetic is on whole milliseconds so money stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

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
