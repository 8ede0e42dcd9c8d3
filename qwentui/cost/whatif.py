"""What-if replay: what each idle timeout would have cost over a record of busy intervals.

The model (also in `qwentui report --help` and the README):

- The box is up in *periods*. A period starts with a cold start (billed; every request
  that arrives during it waits until the engine is ready), covers the busy intervals
  whose gaps are all ≤ the timeout, and ends `timeout` after its last busy interval:
  billed length = cold start + (last busy end − first busy start) + timeout. "never"
  keeps one period up from the first busy start to the end of the replayed window.
- Each period is billed rounded up to the granularity, with the minimum (billing.py).
- The hindsight optimum ("oracle") keeps the box up through a gap exactly when the gap
  is shorter than the cold start and stops right after the last busy interval: billed
  length = cold start + (last busy end − first busy start) per oracle period.

Times are whole milliseconds (ints), money Decimal: the replay is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

from qwentui.cost.billing import Billing
from qwentui.errors import UsageError

MS_PER_HOUR = 3_600_000
DEFAULT_TIMEOUTS = "5m,15m,30m,1h,never"

Span = tuple[int, int]  # [start, end] in epoch milliseconds


@dataclass(frozen=True)
class Outcome:
    """One timeout's (or the oracle's) replay."""

    timeout_ms: int | None  # None = never
    billed_ms: int
    cost: Decimal | None
    cold_starts: int
    wait_ms: int
    vs_oracle: Decimal | None = None

    @property
    def billed_hours(self) -> Decimal:
        return Decimal(self.billed_ms) / MS_PER_HOUR


@dataclass(frozen=True)
class WhatIf:
    rows: tuple[Outcome, ...]
    oracle: Outcome
    cold_start_ms: int
    billing: Billing
    price: Decimal | None
    intervals: int
    days: Decimal
    current_ms: int | None = None  # the configured timeout (None = never / idle stop off)
    max_cold_starts_per_day: float | None = None
    current_known: bool = True  # False: another box's setting (a fleet worker's), not marked

    @property
    def current(self) -> Outcome | None:
        if not self.current_known:
            return None
        return next((r for r in self.rows if r.timeout_ms == self.current_ms), None)

    @property
    def cheapest(self) -> Outcome:
        return _cheapest(self.rows)

    @property
    def cheapest_within_limit(self) -> Outcome | None:
        """The cheapest row whose cold starts per day stay within the limit (None: no limit or none do)."""
        if self.max_cold_starts_per_day is None:
            return None
        ok = [r for r in self.rows if r.cold_starts <= Decimal(str(self.max_cold_starts_per_day)) * self.days]
        return _cheapest(ok) if ok else None


def _cheapest(rows: Sequence[Outcome]) -> Outcome:
    """Least billed; on a tie the fewer cold starts, then the shorter wait."""
    return min(rows, key=lambda r: (r.billed_ms, r.cold_starts, r.wait_ms))


# -- the model ---------------------------------------------------------------------------

def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans merged."""
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def groups(busy: Sequence[Span], keep_up) -> list[tuple[int, int]]:
    """(first, last) indexes of the periods: a gap joins two intervals when keep_up(gap)."""
    out: list[tuple[int, int]] = []
    for i in range(len(busy)):
        if out and keep_up(busy[i][0] - busy[out[-1][1]][1]):
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _waits(busy: Sequence[Span], first: int, last: int, cold_ms: int) -> int:
    ready = busy[first][0] + cold_ms
    return sum(ready - busy[i][0] for i in range(first, last + 1) if busy[i][0] < ready)


def replay(busy: Sequence[Span], timeout_ms: int | None, *, cold_start_ms: int, billing: Billing,
           price: Decimal | None, window_end_ms: int | None = None) -> Outcome:
    """One timeout over merged busy spans (`merge` first). `timeout_ms=None` = never stop."""
    if not busy:
        return Outcome(timeout_ms, 0, None if price is None else Decimal(0), 0, 0)
    if timeout_ms is None:
        end = max(window_end_ms if window_end_ms is not None else busy[-1][1], busy[-1][1])
        periods = [(0, len(busy) - 1)]
        lengths = [cold_start_ms + end - busy[0][0]]
    else:
        periods = groups(busy, lambda gap: gap <= timeout_ms)
        lengths = [cold_start_ms + busy[b][1] - busy[a][0] + timeout_ms for a, b in periods]
    billed = sum(billing.billed_ms(n) for n in lengths)
    wait = sum(_waits(busy, a, b, cold_start_ms) for a, b in periods)
    return Outcome(timeout_ms, billed, _money(price, billed), len(periods), wait)


def oracle(busy: Sequence[Span], *, cold_start_ms: int, billing: Billing, price: Decimal | None) -> Outcome:
    """The hindsight optimum: up through a gap iff the gap is shorter than the cold start."""
    periods = groups(busy, lambda gap: gap < cold_start_ms)
    billed = sum(billing.billed_ms(cold_start_ms + busy[b][1] - busy[a][0]) for a, b in periods)
    return Outcome(None, billed, _money(price, billed), len(periods), 0)


def _money(price: Decimal | None, billed_ms: int) -> Decimal | None:
    return None if price is None else price * billed_ms / MS_PER_HOUR


def run(busy: Iterable[Span], timeouts: Sequence[int | None], *, cold_start_ms: int, billing: Billing,
        price: Decimal | None, window: Span | None = None, current_ms: int | None = None,
        include_current: bool = True, max_cold_starts_per_day: float | None = None,
        current_known: bool = True) -> WhatIf:
    """Every timeout (plus the current one when missing and known) against the oracle."""
    spans = merge(busy)
    wanted = list(timeouts)
    if include_current and current_known and current_ms not in wanted:
        wanted.append(current_ms)
    wanted.sort(key=lambda t: float("inf") if t is None else t)
    best = oracle(spans, cold_start_ms=cold_start_ms, billing=billing, price=price)
    rows = []
    for t in wanted:
        out = replay(spans, t, cold_start_ms=cold_start_ms, billing=billing, price=price,
                     window_end_ms=window[1] if window else None)
        ratio = Decimal(out.billed_ms) / best.billed_ms if best.billed_ms else None
        rows.append(Outcome(t, out.billed_ms, out.cost, out.cold_starts, out.wait_ms, ratio))
    span = window or ((spans[0][0], spans[-1][1]) if spans else (0, 0))
    days = max(Decimal(1), Decimal(span[1] - span[0]) / 86_400_000)
    return WhatIf(tuple(rows), best, cold_start_ms, billing, price, len(spans), days, current_ms,
                  max_cold_starts_per_day, current_known)


# -- inputs ------------------------------------------------------------------------------

def parse_timeouts(text: str, flag: str = "--timeouts") -> list[int | None]:
    """'5m,15m,30m,1h,never' → milliseconds (None = never); bad or repeated entries are errors."""
    from qwentui.config import format_duration, parse_duration
    from qwentui.errors import ConfigError

    out: list[int | None] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"{flag} has an empty entry in {text!r}; write e.g. {DEFAULT_TIMEOUTS}")
        if item.lower() == "never":
            value = None
        else:
            try:
                value = int(round(parse_duration(item, f"{flag} entry") * 1000))
            except ConfigError as exc:
                raise UsageError(str(exc.message)) from None
        if value in out:
            shown = "never" if value is None else format_duration(value / 1000)
            raise UsageError(f"{flag} lists {shown} twice ({text!r})")
        out.append(value)
    return out


def parse_duration_flag(text: str, flag: str, *, zero_ok: bool = True) -> float:
    """A duration option such as --cold-start or --minimum: '45s', '2m', '0'; never negative."""
    from qwentui.config import parse_duration, parse_duration_or_zero
    from qwentui.errors import ConfigError

    try:
        return (parse_duration_or_zero if zero_ok else parse_duration)(text, flag)
    except ConfigError as exc:
        raise UsageError(str(exc.message)) from None


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError(f"not an ISO-8601 string: {value!r}")
    text = value.strip()
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    return datetime.fromisoformat(text).timestamp()  # naive = local time


def parse_trace_line(line: str) -> Span:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(item, dict) or "start" not in item or "end" not in item:
        raise ValueError('expected an object {"start": ISO-8601, "end": ISO-8601}')
    spans = []
    for key in ("start", "end"):
        try:
            spans.append(int(round(_timestamp(item[key]) * 1000)))
        except ValueError:
            raise ValueError(f"bad {key} timestamp {item[key]!r} (want ISO-8601, "
                             "e.g. 2025-04-30T10:00:00+08:00)") from None
    if spans[1] < spans[0]:
        raise ValueError(f"end {item['end']} is before start {item['start']}")
    return spans[0], spans[1]


def read_trace(path: str | Path, *, skip_bad: bool = False) -> tuple[list[Span], list[str]]:
    """Busy spans of a JSONL trace and the problems skipped. Errors name the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read trace {path}: {getattr(exc, 'strerror', None) or exc}") from None
    spans, skipped = [], []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            spans.append(parse_trace_line(line))
        except ValueError as exc:
            problem = f"{path}:{number}: {exc}"
            if not skip_bad:
                raise UsageError(problem + " (--skip-bad skips bad lines)") from None
            skipped.append(problem)
    if not spans:
        where = f"{path}:{len(lines) or 1}"
        what = "no valid intervals" if skipped else "empty trace: no intervals"
        raise UsageError(f"{where}: {what} (one JSON object a line: "
                         '{"start": ISO-8601, "end": ISO-8601})')
    return spans, skipped


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def timeout_label(ms: int | None) -> str:
    from qwentui.config import format_duration

    return "never" if ms is None else format_duration(ms / 1000)



# -- output ------------------------------------------------------------------------------

def _num(value: Decimal | None, places: int) -> float | None:
    return None if value is None else float(value.quantize(Decimal(1).scaleb(-places)))


def _row_dict(r: Outcome) -> dict[str, Any]:
    return {"timeout_s": None if r.timeout_ms is None else r.timeout_ms / 1000,
            "billed_hours": _num(r.billed_hours, 4), "cost": _num(r.cost, 4),
            "cold_starts": r.cold_starts, "wait_s": r.wait_ms / 1000, "vs_oracle": _num(r.vs_oracle, 3)}


def to_dict(w: WhatIf) -> dict[str, Any]:
    """{"rows": [...], "oracle": {...}} as the issue specifies, plus what was assumed."""
    limited = w.cheapest_within_limit
    return {"rows": [_row_dict(r) for r in w.rows],
            "oracle": {"billed_hours": _num(w.oracle.billed_hours, 4), "cost": _num(w.oracle.cost, 4),
                       "cold_starts": w.oracle.cold_starts},
            "current_timeout_s": None if w.current_ms is None or not w.current_known else w.current_ms / 1000,
            "cheapest_timeout_s": _row_dict(w.cheapest)["timeout_s"],
            "cheapest_within_limit_timeout_s": None if limited is None else _row_dict(limited)["timeout_s"],
            "max_cold_starts_per_day": w.max_cold_starts_per_day,
            "cold_start_s": w.cold_start_ms / 1000, "granularity": w.billing.name,
            "minimum_s": w.billing.minimum_ms / 1000,
            "price_per_hour": None if w.price is None else float(w.price), "intervals": w.intervals,
            "days": _num(w.days, 3)}


def render_json(w: WhatIf) -> str:
    return json.dumps(to_dict(w), indent=2) + "\n"


def marks(w: WhatIf, r: Outcome) -> str:
    out = []
    if r is w.current:
        out.append("current")
    if r is w.cheapest:
        out.append("cheapest")
    if r is w.cheapest_within_limit:
        out.append(f"cheapest with ≤{w.max_cold_starts_per_day:g} cold starts/day")
    return ", ".join(out)


def cells(w: WhatIf, r: Outcome, currency: str) -> list[str]:
    from qwentui.cost.prices import format_money, format_number

    ratio = "" if r.vs_oracle is None else f"{r.vs_oracle:.2f}×"
    return [timeout_label(r.timeout_ms), format_number(r.billed_hours, 2), format_money(r.cost, currency),
            str(r.cold_starts), _wait_text(r.wait_ms), ratio, marks(w, r)]


def oracle_cells(w: WhatIf, currency: str) -> list[str]:
    from qwentui.cost.prices import format_money, format_number

    o = w.oracle
    return ["oracle", format_number(o.billed_hours, 2), format_money(o.cost, currency), str(o.cold_starts),
            "", "1.00×", "hindsight optimum"]


HEADERS = ["timeout", "billed h", "cost", "cold starts", "waited", "vs oracle", ""]


def _wait_text(ms: int) -> str:
    from qwentui.idle.watchdog import clock_text

    return clock_text(ms / 1000, up=True)


def render_table(w: WhatIf, *, title: str, currency: str) -> str:
    from qwentui.cost.plan import table
    from qwentui.cost.prices import format_number, format_price

    body = [cells(w, r, currency) for r in w.rows] + [oracle_cells(w, currency)]
    minimum = f", minimum {timeout_label(w.billing.minimum_ms)}" if w.billing.minimum_ms else ""
    price = format_price(w.price, currency) + "/h" if w.price is not None else "price unknown"
    out = [f"qwentui what-if: {title}",
           f"{w.intervals} busy intervals over {format_number(w.days, 1)} day(s) · cold start "
           f"{timeout_label(w.cold_start_ms)} · {price} · billed per {w.billing.name}{minimum}", ""]
    out += ["  " + line for line in table(HEADERS, body, right={1, 2, 3, 4, 5})]
    out += ["", "A period starts with a cold start (billed; requests during it wait), covers busy "
            "intervals with gaps ≤ the timeout", "and ends one timeout after the last; each period is "
            "rounded up to the granularity. The oracle stays up", "through a gap only when it is "
            "shorter than the cold start and stops right after the last busy interval."]
    return "\n".join(out) + "\n"


def render_csv(w: WhatIf) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["timeout", "timeout_s", "billed_hours", "cost", "cold_starts", "wait_s", "vs_oracle", "mark"])
    for r in w.rows:
        d = _row_dict(r)
        writer.writerow([timeout_label(r.timeout_ms), d["timeout_s"], d["billed_hours"], d["cost"],
                         d["cold_starts"], d["wait_s"], d["vs_oracle"], marks(w, r)])
    o = to_dict(w)["oracle"]
    writer.writerow(["oracle", "", o["billed_hours"], o["cost"], o["cold_starts"], "", 1.0, "hindsight optimum"])
    return buf.getvalue()
