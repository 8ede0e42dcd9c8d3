"""The fleet in the ledger: one session per worker at its own price, counted from the open."""

from __future__ import annotations

from decimal import Decimal

import pytest

from qwentui import config
from qwentui.cost.fleetbook import FleetBook, worker_prices
from qwentui.cost.ledger import Ledger
from qwentui.errors import ConfigError
from qwentui.telemetry.fleet import COST_UNKNOWN, FleetSnapshot, GatewayCounters, WorkerRow, cost_label

A, B = "http://10.0.0.1:30000", "http://10.0.0.2:30000"


def snap(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> FleetSnapshot:
    def row(url, counts):
        if counts is None:
            return WorkerRow(url, False, False, error="connection refused")
        return WorkerRow(url, True, True, prompt_tokens_total=counts[0], generation_tokens_total=counts[1],
                         requests_total=counts[2])
    return FleetSnapshot(0.0, "http://127.0.0.1:30080", (row(A, a), row(B, b)), GatewayCounters(True))


def test_sessions_per_worker_count_from_open_and_survive_a_restart(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3", clock=lambda: 1000.0)
    book = FleetBook(ledger, [A, B], worker_prices({A + "/": 1.8}, [A, B]), currency="USD", at=1000.0)
    book.record(snap((100, 1000, 10), (50, 500, 5)), at=1001.0)  # zero: earlier work is not the fleet's
    book.record(snap((160, 1600, 16), None), at=1010.0)  # B went away: keeps its last counts
    book.record(snap((20, 200, 2), (80, 800, 8)), at=1020.0)  # A restarted: counts anew from 0
    book.close("signal", at=1030.0)
    rows = {r.gpu_model: r for r in ledger.sessions()}
    a, b = rows[f"worker {A}"], rows[f"worker {B}"]
    assert (a.tokens_in, a.tokens_out, a.requests) == (20, 200, 2)
    assert (b.tokens_in, b.tokens_out, b.requests) == (30, 300, 3)
    assert a.price_per_hour == Decimal("1.8") and b.price_per_hour is None
    assert a.stop_reason == b.stop_reason == "signal" and a.currency == "USD"
    assert a.cost is not None and a.cost > 0 and b.cost is None  # unknown price: no invented cost
    ledger.close()


def test_prices_config_and_labels():
    cfg = config.from_mapping({"fleet": {"prices": {A: 1.8}}})
    assert cfg.fleet.prices == {A: 1.8}
    with pytest.raises(ConfigError, match="fleet.prices"):
        config.from_mapping({"fleet": {"prices": {A: 0}}})
    assert cost_label(None) == COST_UNKNOWN
    assert cost_label(1.8, "$") == "$1.8/h (fleet.prices); idle unknown"
