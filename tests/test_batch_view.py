"""Progress line (TTY and plain) and the final summary's numbers."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import pytest

from qwentui.batch.runner import BatchResult, Progress
from qwentui.batch.progress import ProgressPrinter, duration, money, progress_line, summary_lines
from qwentui.cache import CacheStats

P = Progress(total=100, done=40, ok=38, failed=2, cached=5, in_flight=8, completion_tokens=12000, elapsed_s=20.0)


@pytest.mark.parametrize("seconds,text", [(None, "?"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_money_uses_more_places_for_small_amounts():
    assert money(Decimal("0.00123"), "CNY") == "¥0.0012"
    assert money(Decimal("12.345"), "CNY") == "¥12.35"
    assert money(None, "CNY") == "?"


def test_progress_line():
    line = progress_line(P, Decimal("0.05"), "CNY")
    assert line == ("batch 40/100 40% · 38 ok · 2 failed · 5 cached · 8 in flight · 600 tok/s · ETA 30s · "
                    "¥0.05 so far")
    assert P.eta_s == 30.0 and P.tokens_per_s == 600.0
    assert "so far" not in progress_line(P, None, "CNY")


def test_tty_redraws_one_line_plain_prints_lines():
    tty, plain = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (plain, False)):
        printer = ProgressPrinter(stream, tty=is_tty, price=None, currency="CNY", cost=lambda: None)
        printer.show(P)
        printer.show(P)
        printer.done(P)
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1
    assert plain.getvalue().count("\n") == 2 and "\r" not in plain.getvalue()
    assert ProgressPrinter(plain, tty=False, price=None, currency="CNY", cost=lambda: None).interval == 10.0


@dataclass
class Book:
    price: Decimal | None = Decimal("1.8")
    currency: str = "CNY"
    seconds: float = 200.0

    def cost(self):
        return None if self.price is None else self.price * Decimal(str(self.seconds)) / 3600

    def elapsed(self):
        return self.seconds


@dataclass
class Engine:
    model: str = "Qwen/Qwen3-1.7B"
    base_url: str = "http://127.0.0.1:30000"
    kind: str = "sim"
    simulated: bool = True


def result(**kw) -> BatchResult:
    base = dict(total=100, skipped=0, ok=98, failed=2, cached=10, not_done=0, prompt_tokens=1000,
                completion_tokens=20000, reasoning_tokens=5000, wall_s=100.0, latency_sum_s=600.0, retries=1,
                cache=CacheStats(backend="sqlite", enabled=True, hits=10, misses=90, tokens_saved=2000))
    return BatchResult(**{**base, **kw})


def test_summary_numbers():
    lines = summary_lines(result(), engine=Engine(), book=Book(), output="out.jsonl")
    text = "\n".join(lines)
    assert lines[0] == "batch done: 100 requests · 98 ok (10 from cache) · 2 failed · 1 retry → out.jsonl"
    assert "20,000 generated (5,000 reasoning) · 200 tok/s over 1m40s" in text
    assert "speed-up: ≈6.0× vs concurrency 1" in text  # 600 s of latencies in 100 s of wall time
    # 200 s at 1.8/h = 0.1; per 1K generated tokens: 0.1 / 20 = 0.005
    assert "cost: ¥0.10 for 3m20s of box time at ¥1.8/h · ¥0.005 per 1K generated tokens" in text
    # 2000 tokens saved at 200 tok/s = 10 s of box time at 1.8/h = 0.005
    assert "cache (sqlite): 10 hits / 100 lookups (10%) · 2,000 tokens not regenerated ≈ ¥0.005 of box time" in text
    assert lines[-1] == "engine: Qwen/Qwen3-1.7B (SIMULATED) at http://127.0.0.1:30000 (started, sim)"


def test_summary_without_price_cache_or_answers():
    r = result(ok=0, failed=5, cached=0, completion_tokens=0, latency_sum_s=0.0, interrupted=True, not_done=3,
               skipped=4, engine_error="engine exited with code -9", cache=CacheStats(backend="off", enabled=False))
    text = "\n".join(summary_lines(r, engine=Engine(kind="attached", simulated=False), book=Book(price=None),
                                   output="o"))
    assert text.startswith("batch interrupted: 5 requests · 0 ok · 5 failed · 1 retry · 4 already done · "
                           "3 not done")
    assert "speed-up" not in text and "cache" not in text
    assert "cost: unknown (no price for this GPU" in text
    assert "(attached)" in text and "SIMULATED" not in text
    assert "engine problem: engine exited with code -9" in text


def test_summary_names_a_disabled_cache():
    r = result(cache=CacheStats(backend="redis", enabled=False, warning="cache disabled: Redis at x is unavailable"))
    text = "\n".join(summary_lines(r, engine=Engine(), book=Book(), output="o"))
    assert "cache (redis): off — cache disabled: Redis at x is unavailable" in text
