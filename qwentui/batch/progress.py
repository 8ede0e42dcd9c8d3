"""What `qwentui batch` prints: a progress line and the final summary (plain text)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from qwentui.batch.runner import BatchResult, Progress
from qwentui.cache import money_saved
from qwentui.cost.prices import format_money, format_number, format_price

TTY_INTERVAL = 0.25
PLAIN_INTERVAL = 10.0


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def money(amount: Decimal | None, currency: str) -> str:
    """Two places for real money ('¥0.10'), up to four for the small amounts batches often cost."""
    if amount is None:
        return "?"
    if abs(amount) >= Decimal("0.1"):
        return format_money(amount, currency, places=2, trim=False)
    return format_money(amount, currency, places=4)


def progress_line(p: Progress, cost: Decimal | None, currency: str) -> str:
    pct = f"{100 * p.done // p.total}%" if p.total else "-"
    parts = [f"batch {p.done}/{p.total} {pct}", f"{p.ok} ok"]
    if p.failed:
        parts.append(f"{p.failed} failed")
    if p.cached:
        parts.append(f"{p.cached} cached")
    parts += [f"{p.in_flight} in flight", f"{format_number(p.tokens_per_s, 0)} tok/s",
              f"ETA {duration(p.eta_s)}"]
    if cost is not None:
        parts.append(f"{money(cost, currency)} so far")
    return " · ".join(parts)


class ProgressPrinter:
    """A `\\r` line on a TTY, redrawn every 0.25 s; a plain line every 10 s otherwise."""

    def __init__(self, stream: TextIO, *, tty: bool, price: Decimal | None, currency: str,
                 cost: Callable[[], Decimal | None]) -> None:
        self.stream, self.tty, self.price, self.currency, self._cost = stream, tty, price, currency, cost
        self.interval = TTY_INTERVAL if tty else PLAIN_INTERVAL

    def show(self, p: Progress) -> None:
        line = progress_line(p, self._cost(), self.currency)
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, p: Progress) -> None:
        if self.tty:
            self.show(p)
            self.stream.write("\n")
            self.stream.flush()


def summary_lines(r: BatchResult, *, engine: Any, book: Any, output: Path | str) -> list[str]:
    lines = [_head(r, output),
             f"tokens: {format_number(r.prompt_tokens, 0)} prompt · {format_number(r.completion_tokens, 0)} "
             f"generated ({format_number(r.reasoning_tokens, 0)} reasoning) · "
             f"{format_number(r.throughput, 0)} tok/s over {duration(r.wall_s)}"]
    if r.speedup is not None:
        lines.append(f"speed-up: ≈{r.speedup:.1f}× vs concurrency 1 (sum of request latencies / wall time; "
                     "an upper estimate)")
    lines.append(_cost_line(r, book))
    if r.cache.backend != "off":
        lines.append(_cache_line(r, book))
    lines.append(_engine_line(engine))
    if r.engine_error:
        lines.append(f"engine problem: {r.engine_error}")
    return lines


def _head(r: BatchResult, output: Path | str) -> str:
    parts = [f"{r.requests} requests", f"{r.ok} ok" + (f" ({r.cached} from cache)" if r.cached else ""),
             f"{r.failed} failed"]
    if r.retries:
        parts.append(f"{r.retries} retr{'y' if r.retries == 1 else 'ies'}")
    if r.skipped:
        parts.append(f"{r.skipped} already done")
    if r.not_done:
        parts.append(f"{r.not_done} not done")
    return f"batch {'interrupted' if r.interrupted else 'done'}: " + " · ".join(parts) + f" → {output}"


def _cost_line(r: BatchResult, book: Any) -> str:
    cost = book.cost()
    if cost is None:
        return "cost: unknown (no price for this GPU; set cost.price_per_hour or [cost.prices])"
    per_1k = cost * 1000 / r.completion_tokens if r.completion_tokens else None
    elapsed = duration(book.elapsed())
    text = f"cost: {money(cost, book.currency)} for {elapsed} of box time at {format_price(book.price, book.currency)}/h"
    billing = getattr(book, "billing", None)
    if billing is not None and billing.rounds:
        text += f" (billed per {billing.name})"
    return text + (f" · {money(per_1k, book.currency)} per 1K generated tokens" if per_1k is not None else "")


def _cache_line(r: BatchResult, book: Any) -> str:
    s = r.cache
    if not s.enabled and s.warning:
        return f"cache ({s.backend}): off — {s.warning}"
    rate = f" ({100 * s.hit_rate:.0f}%)" if s.hit_rate is not None else ""
    saved = money_saved(s, book.price, r.throughput or None)
    worth = f" ≈ {money(saved, book.currency)} of box time" if saved is not None and s.hits else ""
    return (f"cache ({s.backend}): {s.hits} hits / {s.lookups} lookups{rate} · "
            f"{format_number(s.tokens_saved, 0)} tokens not regenerated{worth}")


def _engine_line(engine: Any) -> str:
    label = " (SIMULATED)" if engine.simulated else ""
    how = {"attached": "attached", "running": "already running"}.get(engine.kind, f"started, {engine.kind}")
    return f"engine: {engine.model}{label} at {engine.base_url} ({how})"
