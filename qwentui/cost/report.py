"""The monthly (or date-range) report: sessions, totals per day/month/GPU, always-on comparison.

Sessions that cross a period edge are cut at it: money and minutes by time, tokens and
cache counts in proportion to time (whole numbers that still add up). Open sessions
end at their last heartbeat. Money stays Decimal until a renderer rounds it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from qwentui.cost import periods
from qwentui.cost.ledger import SessionRow, iso
from qwentui.cost.plan import (HOURS_PER_WEEK, Scenario, comparison_lines, plain, saving, saving_line,
                               scenario, table)
from qwentui.cost.prices import format_money, format_number, format_price, table_price

MS_PER_WEEK = 7 * 24 * 3_600_000


@dataclass(frozen=True)
class Bucket:
    """Totals of one day, month, GPU or the whole report."""

    key: str
    sessions: int = 0
    ms: int = 0
    cost: Decimal = Decimal(0)
    unpriced: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    cache_hits: int = 0
    cache_saved: int = 0

    @property
    def minutes(self) -> Decimal:
        return Decimal(self.ms) / 60000

    @property
    def hours(self) -> Decimal:
        return Decimal(self.ms) / periods.MS_PER_HOUR

    @property
    def per_1k_tokens(self) -> Decimal | None:
        return self.cost * 1000 / self.tokens_out if self.tokens_out else None

    @property
    def cache_saved_cost(self) -> Decimal | None:
        per_1k = self.per_1k_tokens
        return None if per_1k is None else per_1k * self.cache_saved / 1000

    def plus(self, ms: int, cost: Decimal | None, counts: tuple[int, ...], new_session: bool) -> "Bucket":
        tin, tout, reqs, hits, saved = counts
        return replace(self, sessions=self.sessions + new_session, ms=self.ms + ms,
                       cost=self.cost + (cost or 0), unpriced=self.unpriced + (cost is None and new_session),
                       tokens_in=self.tokens_in + tin, tokens_out=self.tokens_out + tout,
                       requests=self.requests + reqs, cache_hits=self.cache_hits + hits,
                       cache_saved=self.cache_saved + saved)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "sessions": self.sessions, "minutes": plain(self.minutes, 3),
                "cost": plain(self.cost, 4), "sessions_without_price": self.unpriced,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "requests": self.requests,
                "per_1k_tokens": plain(self.per_1k_tokens, 6), "cache_hits": self.cache_hits,
                "cache_saved_tokens": self.cache_saved, "cache_saved_cost": plain(self.cache_saved_cost, 4)}


@dataclass(frozen=True)
class Report:
    title: str
    start: float
    end: float
    currency: str
    tz: tzinfo | None
    sessions: tuple[SessionRow, ...]
    days: tuple[Bucket, ...]
    months: tuple[Bucket, ...]
    gpus: tuple[Bucket, ...]
    total: Bucket
    compare: tuple[Scenario, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    # the pictures (cost/charts.py `with_activity`): cost per day split, and the what-if replay
    daily: tuple[Any, ...] = field(default=())
    recorded: bool = False  # the ledger has busy intervals for this period
    budget_month: float = 0.0
    whatif: Any = None


def _shares(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to `weights` (of the whole session) with exact sums."""
    whole = sum(weights)
    out, done, acc = [], 0, 0
    for w in weights:
        acc += w
        upto = total * acc // whole if whole else total
        out.append(upto - done)
        done = upto
    return out


def _pieces(row: SessionRow, start: float, end: float, unit: str, tz: tzinfo | None):
    """(key, ms, cost, counts) of the parts of `row` inside [start, end), cut by `unit`."""
    lo, hi = max(row.start, start), min(row.billed_end, end)
    if unit == "all":
        parts = [("", lo, hi)] if hi > lo or lo == row.start else []
    else:
        parts = periods.split(lo, hi, unit, tz) or ([(periods.local(lo, tz).strftime(
            "%Y-%m-%d" if unit == "day" else "%Y-%m"), lo, lo)] if lo == row.start and lo < end else [])
    session_ms = max(0, periods.to_ms(row.billed_end) - periods.to_ms(row.start))
    weights = [periods.to_ms(b) - periods.to_ms(a) for _, a, b in parts]
    if session_ms == 0:
        weights = [1] * len(parts)
        session_ms = len(parts)
    counts = [row.tokens_in, row.tokens_out, row.requests, row.cache_hits, row.cache_saved]
    split = [_shares(c, weights + [session_ms - sum(weights)])[:-1] for c in counts]
    for i, (key, a, b) in enumerate(parts):
        ms = periods.to_ms(b) - periods.to_ms(a)
        yield key, ms, periods.cost_of(row.price_per_hour, a, b), tuple(s[i] for s in split)


def _group(rows: list[SessionRow], start: float, end: float, unit: str, tz: tzinfo | None,
           keyer=None) -> list[Bucket]:
    buckets: dict[str, Bucket] = {}
    for row in rows:
        seen: set[str] = set()
        for key, ms, cost, counts in _pieces(row, start, end, "all" if keyer else unit, tz):
            key = keyer(row) if keyer else key
            bucket = buckets.get(key, Bucket(key))
            buckets[key] = bucket.plus(ms, cost, counts, key not in seen)
            seen.add(key)
    return [buckets[k] for k in sorted(buckets)]


def gpu_key(row: SessionRow) -> str:
    return row.gpu_class or row.gpu_model or "unknown"


def _main_gpu(rows: list[SessionRow], gpus: list[Bucket]) -> tuple[str, Decimal | None]:
    """The GPU class used longest, and the price it was billed at most recently."""
    if not gpus:
        return "", None
    main = max(gpus, key=lambda b: b.ms).key
    prices = [r.price_per_hour for r in rows if gpu_key(r) == main and r.price_per_hour is not None]
    return main, (prices[-1] if prices else None)


def _compare(cfg: Any, rows: list[SessionRow], total: Bucket, gpus: list[Bucket], span_ms: int,
             reference: str | None) -> tuple[Scenario, ...]:
    if span_ms <= 0 or not rows:
        return ()
    weeks = Decimal(span_ms) / MS_PER_WEEK
    main, main_price = _main_gpu(rows, gpus)
    prices = {r.price_per_hour for r in rows if r.price_per_hour is not None}
    one_price = next(iter(prices)) if len(prices) == 1 and len(gpus) == 1 else None
    actual = scenario("actual", total.hours / weeks, main if len(gpus) == 1 else "mixed",
                      one_price, weekly=total.cost / weeks if prices else None)
    out = [scenario("always-on, same GPU", HOURS_PER_WEEK, main, main_price)]
    ref_price = table_price(cfg, reference) if reference else None
    if reference and reference.upper() != main.upper() and ref_price is not None:
        out.append(scenario(f"always-on, {reference}", HOURS_PER_WEEK, reference, ref_price))
    return (*out, actual)


def build(rows: list[SessionRow], start: float, end: float, *, cfg: Any, title: str,
          now: float, tz: tzinfo | None = None, reference: str | None = "A10G") -> Report:
    """The report over [start, end) for `rows` (sessions overlapping it)."""
    rows = [r for r in rows if r.start < end and (r.end > start or r.start >= start)]
    days = _group(rows, start, end, "day", tz)
    months = _group(rows, start, end, "month", tz)
    gpus = _group(rows, start, end, "all", tz, keyer=gpu_key)
    totals = _group(rows, start, end, "all", tz, keyer=lambda r: "total")
    total = totals[0] if totals else Bucket("total")
    span_ms = periods.to_ms(min(end, max(now, start))) - periods.to_ms(start)
    currency = rows[-1].currency if rows else cfg.cost.currency
    notes = []
    if total.unpriced:
        zero = format_money(Decimal(0), currency)
        notes.append(f"{total.unpriced} session(s) had no known price and count as {zero}")
    if any(r.open for r in rows):
        notes.append("open sessions are counted up to their last heartbeat")
    return Report(title=title, start=start, end=end, currency=currency, tz=tz, sessions=tuple(rows),
                  days=tuple(days), months=tuple(months), gpus=tuple(gpus), total=total,
                  compare=_compare(cfg, rows, total, gpus, span_ms, reference), notes=tuple(notes))


# -- rendering ---------------------------------------------------------------------------

def _when(ts: float, tz: tzinfo | None) -> str:
    return periods.local(ts, tz).strftime("%Y-%m-%d %H:%M")


def _local_iso(ts: float, tz: tzinfo | None) -> str:
    aware = periods.local(ts, tz).replace(tzinfo=tz) if tz else periods.local(ts).astimezone()
    return aware.isoformat(timespec="seconds")


def session_cells(row: SessionRow, cur: str, tz: tzinfo | None) -> list[str]:
    cost = row.cost if row.cost is not None or row.price_per_hour is None else row.cost_between(row.start, row.billed_end)
    minutes = Decimal(periods.to_ms(row.end) - periods.to_ms(row.start)) / 60000
    per_1k = cost * 1000 / row.tokens_out if cost is not None and row.tokens_out else None
    return [str(row.id), _when(row.start, tz), "open" if row.open else _when(row.end, tz),
            format_number(minutes), row.gpu_class or row.gpu_model or "?",
            format_price(row.price_per_hour, cur), format_money(cost, cur), format_number(row.tokens_in, 0),
            format_number(row.tokens_out, 0), format_money(per_1k, cur, places=4),
            format_number(row.cache_hits, 0), row.stop_reason or "open"]


def bucket_cells(b: Bucket, cur: str) -> list[str]:
    return [b.key, str(b.sessions), format_number(b.hours, 2), format_money(b.cost, cur),
            format_number(b.tokens_in, 0), format_number(b.tokens_out, 0),
            format_money(b.per_1k_tokens, cur, places=4), format_number(b.cache_hits, 0),
            format_number(b.cache_saved, 0), format_money(b.cache_saved_cost, cur)]


def _bucket_lines(first: str, buckets: tuple[Bucket, ...], cur: str, sym: str) -> list[str]:
    headers = [first, "sessions", "hours", "cost", "tokens in", "tokens out", f"{sym}/1K tok",
               "cache hits", "saved tok", "saved"]
    return ["  " + line for line in table(headers, [bucket_cells(b, cur) for b in buckets],
                                          right=set(range(1, 10)))]


def render_table(report: Report) -> str:
    from qwentui.cost.prices import symbol

    cur, tz, sym = report.currency, report.tz, symbol(report.currency).strip() or report.currency
    last_day = periods.local(report.end - 1, tz).strftime("%Y-%m-%d")
    out = [f"qwentui cost report: {report.title} "
           f"({periods.local(report.start, tz):%Y-%m-%d} to {last_day}, local time, {cur})", ""]
    if not report.sessions:
        return "\n".join(out + ["no sessions in this period", ""])
    headers = ["#", "start", "stop", "minutes", "GPU", "price/h", "cost", "tokens in", "tokens out",
               f"{sym}/1K tok", "cache hits", "stop reason"]
    rows = [session_cells(r, cur, tz) for r in report.sessions]
    out += ["Sessions", *["  " + x for x in table(headers, rows, right={0, 3, 5, 6, 7, 8, 9, 10})], ""]
    out += ["Per day", *_bucket_lines("day", report.days, cur, sym), ""]
    out += ["Per month", *_bucket_lines("month", report.months, cur, sym), ""]
    out += ["Per GPU", *_bucket_lines("GPU", report.gpus, cur, sym), ""]
    out += ["Total", *_bucket_lines("total", (report.total,), cur, sym), ""]
    if report.compare:
        *before, actual = report.compare
        out += ["Compared with always-on (52 weeks a year)",
                *["  " + x for x in comparison_lines(list(report.compare), cur)]]
        out += [f"  vs {b.label}: {saving_line(b, actual, cur)}" for b in before]
        out.append("")
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out).rstrip("\n") + "\n"


def _session_dict(row: SessionRow, tz: tzinfo | None) -> dict[str, Any]:
    cost = row.cost if not row.open else row.cost_between(row.start, row.billed_end)
    return {"id": row.id, "start": _local_iso(row.start, tz), "stop": None if row.open else _local_iso(row.end, tz),
            "start_utc": iso(row.start), "stop_utc": None if row.stop is None else iso(row.stop),
            "heartbeat_utc": iso(row.heartbeat), "open": row.open,
            "minutes": plain(Decimal(periods.to_ms(row.end) - periods.to_ms(row.start)) / 60000, 3),
            "gpu_model": row.gpu_model, "gpu_class": row.gpu_class,
            "price_per_hour": plain(row.price_per_hour), "currency": row.currency, "cost": plain(cost, 4),
            "tokens_in": row.tokens_in, "tokens_out": row.tokens_out, "requests": row.requests,
            "cache_hits": row.cache_hits, "cache_saved_tokens": row.cache_saved,
            "stop_reason": row.stop_reason, "engine_kind": row.engine_kind}


def to_dict(report: Report) -> dict[str, Any]:
    compare = None
    if report.compare:
        *before, actual = report.compare
        compare = {"weeks_per_year": 52, "scenarios": [s.to_dict() for s in report.compare],
                   "savings": [{"vs": b.label, "yearly": plain(saving(b, actual)[0], 4),
                                "pct": plain(saving(b, actual)[1], 1)} for b in before]}
    return {"title": report.title, "from": _local_iso(report.start, report.tz),
            "to": _local_iso(report.end, report.tz), "currency": report.currency,
            "sessions": [_session_dict(r, report.tz) for r in report.sessions],
            "days": [b.to_dict() for b in report.days], "months": [b.to_dict() for b in report.months],
            "gpus": [b.to_dict() for b in report.gpus], "total": report.total.to_dict(),
            "always_on": compare, "notes": list(report.notes)}


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = ["kind", "key", "start", "stop", "minutes", "gpu_model", "gpu_class", "price_per_hour",
              "currency", "cost", "tokens_in", "tokens_out", "requests", "per_1k_tokens", "cache_hits",
              "cache_saved_tokens", "stop_reason"]


def render_csv(report: Report) -> str:
    """Sessions, then day/month/GPU/total rows (`kind` says which); the comparison is in JSON."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in report.sessions:
        d = _session_dict(row, report.tz)
        per_1k = (Decimal(d["cost"]) * 1000 / row.tokens_out) if d["cost"] and row.tokens_out else None
        writer.writerow({**d, "kind": "session", "key": row.id, "per_1k_tokens": plain(per_1k, 6)})
    for kind, buckets in (("day", report.days), ("month", report.months), ("gpu", report.gpus),
                          ("total", (report.total,))):
        for b in buckets:
            writer.writerow({**b.to_dict(), "kind": kind, "currency": report.currency})
    return buf.getvalue()
