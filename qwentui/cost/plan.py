"""Weekly and yearly cost of a usage pattern, and the seed's before/after comparison.

A year is 52 weeks, as in the seed: 168 h/wk on an A10G at ¥3.0 is ¥504 a week and
¥26,208 a year; 8 h/wk on a T4 at ¥1.8 is ¥14.4 and ¥748.8; the saving is 97.1%.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from qwentui.cost.prices import format_money, format_number, format_price, parse_money, resolve_gpu
from qwentui.errors import UsageError

WEEKS_PER_YEAR = 52
HOURS_PER_WEEK = Decimal(168)


def plain(value: Decimal | None, places: int | None = None) -> str | None:
    """Decimal as exact JSON/CSV text without exponent: Decimal('504.0') → '504'."""
    if value is None:
        return None
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class Scenario:
    """A usage pattern: hours a week on a GPU at a price; weekly and yearly cost."""

    label: str
    hours_per_week: Decimal
    gpu: str
    price_per_hour: Decimal | None
    weekly: Decimal | None
    yearly: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "hours_per_week": plain(self.hours_per_week, 4), "gpu": self.gpu,
                "price_per_hour": plain(self.price_per_hour), "weekly": plain(self.weekly, 4),
                "yearly": plain(self.yearly, 4)}


def scenario(label: str, hours_per_week: Decimal, gpu: str, price: Decimal | None,
             weekly: Decimal | None = None) -> Scenario:
    """`weekly` defaults to hours × price (pass it when several prices were mixed)."""
    if weekly is None and price is not None:
        weekly = hours_per_week * price
    yearly = None if weekly is None else weekly * WEEKS_PER_YEAR
    return Scenario(label, hours_per_week, gpu, price, weekly, yearly)


def saving(before: Scenario, after: Scenario) -> tuple[Decimal | None, Decimal | None]:
    """(yearly amount saved, percent saved) going from `before` to `after`."""
    if before.yearly is None or after.yearly is None:
        return None, None
    amount = before.yearly - after.yearly
    if before.yearly == 0:
        return amount, None
    return amount, amount * 100 / before.yearly


def format_pct(pct: Decimal) -> str:
    return f"{pct.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def saving_line(before: Scenario, after: Scenario, currency: str) -> str:
    """'saving 97.1%: ¥26,208 → ¥748.8 a year (¥25,459.2 less, 52 weeks a year)'."""
    amount, pct = saving(before, after)
    if amount is None:
        return "saving unknown: a price is missing"
    span = (f"{format_money(before.yearly, currency)} → {format_money(after.yearly, currency)} a year "
            f"({format_money(abs(amount), currency)} {'less' if amount >= 0 else 'more'}, "
            f"{WEEKS_PER_YEAR} weeks a year)")
    if pct is None:
        return f"saving n/a: {span}"
    if pct < 0:
        return f"costs {format_pct(-pct)} more: {span}"
    return f"saving {format_pct(pct)}: {span}"


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    """Plain aligned columns (no colour: output is often piped)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = []
    for row in [headers, *rows]:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def comparison_lines(rows: list[Scenario], currency: str) -> list[str]:
    body = [[s.label, f"{format_number(s.hours_per_week)} h", s.gpu, format_price(s.price_per_hour, currency),
             format_money(s.weekly, currency), format_money(s.yearly, currency)] for s in rows]
    return table(["scenario", "hours/week", "GPU", "price/h", "weekly", "yearly"], body, right={1, 3, 4, 5})


def parse_hours(text: str, flag: str) -> Decimal:
    """Hours per week, 0 to 168."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise UsageError(f"{flag} must be a number of hours, got {text!r}")
    if value < 0:
        raise UsageError(f"{flag} must not be negative, got {text}")
    if value > HOURS_PER_WEEK:
        raise UsageError(f"{flag} must be at most 168 (the hours in a week), got {text}")
    return value


@dataclass(frozen=True)
class Plan:
    before: Scenario
    after: Scenario
    currency: str

    def to_dict(self) -> dict[str, Any]:
        amount, pct = saving(self.before, self.after)
        return {"currency": self.currency, "weeks_per_year": WEEKS_PER_YEAR,
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "saving_yearly": plain(amount, 4), "saving_pct": plain(pct, 1)}

    def lines(self) -> list[str]:
        return [*comparison_lines([self.before, self.after], self.currency),
                "", saving_line(self.before, self.after, self.currency)]


def _gpu(cfg: Any, name: str, price: str | None, flag: str) -> tuple[str, Decimal]:
    if price is not None:
        return name.strip(), parse_money(price, flag)
    return resolve_gpu(cfg, name)


def make_plan(cfg: Any, hours: str, gpu: str, *, vs_hours: str | None = None, vs_gpu: str | None = None,
              price: str | None = None, vs_price: str | None = None) -> Plan:
    """The plan (after) against --vs (before; default: always-on, 168 h/wk, same GPU)."""
    after_hours = parse_hours(hours, "--hours-per-week")
    before_hours = HOURS_PER_WEEK if vs_hours is None else parse_hours(vs_hours, "--vs-hours-per-week")
    after_gpu, after_price = _gpu(cfg, gpu, price, "--price")
    if vs_gpu is None and vs_price is None:
        before_gpu, before_price = after_gpu, after_price
    else:
        before_gpu, before_price = _gpu(cfg, vs_gpu or gpu, vs_price, "--vs-price")
    return Plan(before=scenario("before", before_hours, before_gpu, before_price),
                after=scenario("after", after_hours, after_gpu, after_price),
                currency=cfg.cost.currency)
