"""The fleet in the ledger: one session per worker, each at its own price (`fleet.prices`).

A worker's tokens come from its own `/metrics` counters (a FleetSnapshot row), counted from
the first reading after the session opened, so the engine's earlier work is not billed to
the fleet. A worker that stops answering keeps its last counts. Sessions close with the
gateway (stop reason "user", "signal" or "crash").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Sequence

from qwentui.cost.ledger import WORKER_SOURCE, Ledger
from qwentui.cost.prices import to_decimal
from qwentui.telemetry.na import NA


def worker_prices(prices: Mapping[str, Any], workers: Sequence[str]) -> dict[str, Decimal | None]:
    """fleet.prices keyed by normalized worker URL ('http://a:1/' and 'http://a:1' are one)."""
    by_url = {str(url).rstrip("/"): to_decimal(price) for url, price in prices.items()}
    return {url: by_url.get(url.rstrip("/")) for url in workers}


class FleetBook:
    def __init__(self, ledger: Ledger, workers: Sequence[str], prices: Mapping[str, Decimal | None], *,
                 currency: str = "CNY", kind: str = "sglang", billing: Any = None,
                 at: float | None = None) -> None:
        self.ledger = ledger
        self.sessions = {url: ledger.open_session(WORKER_SOURCE + url, prices.get(url), kind, currency=currency,
                                                  billing=billing, at=at)
                         for url in workers}
        self._base: dict[str, tuple[float, float, float]] = {}
        self._last: dict[str, tuple[int, int, int]] = {}

    def record(self, snapshot: Any, at: float | None = None) -> None:
        """Heartbeat every worker's session with its counts since the session opened."""
        for row in snapshot.rows:
            session = self.sessions.get(row.url)
            counters = (row.prompt_tokens_total, row.generation_tokens_total, row.requests_total)
            if session is None or any(c is NA for c in counters):
                continue
            base = self._base.setdefault(row.url, counters)
            if any(c < b for c, b in zip(counters, base)):  # the worker restarted: count anew
                base = self._base[row.url] = (0.0, 0.0, 0.0)
            done = tuple(int(c - b) for c, b in zip(counters, base))
            self._last[row.url] = done
            self.ledger.heartbeat(session, *done, at=at)

    def close(self, reason: str, at: float | None = None) -> None:
        for url, session in self.sessions.items():
            tokens_in, tokens_out, requests = self._last.get(url, (None, None, None))
            self.ledger.close_session(session, reason, at=at, tokens_in=tokens_in, tokens_out=tokens_out,
                                      requests=requests)
        self.sessions = {}
