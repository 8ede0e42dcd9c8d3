"""Cost pane: Pilot behaviour tests and SVG snapshots, in a small _Host app."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from qwentui.cost.meter import CostSnapshot
from qwentui.ui.widgets.cost import CostPane, budget_bar, budget_fraction, header_text

BASE = CostSnapshot(
    at=1_746_000_000.0, currency="CNY", symbol="¥", basis="instance", gpu_model="Tesla T4", gpu_class="T4",
    rate_per_hour=Decimal("1.8"), engine_running=True, engine_seconds=2700.0,
    engine_session_cost=Decimal("1.35"), box_seconds=4500.0, box_since_boot_cost=Decimal("2.25"),
    session_cost=Decimal("2.25"), today_cost=Decimal("3.6"), month_cost=Decimal("41.2"),
    projected_month=Decimal("612.4"), idle_seconds=420.0, idle_cost=Decimal("0.21"), tokens_in=1200,
    tokens_out=20_100, requests=36, per_1k_tokens=Decimal("2.25") * 1000 / 20_100, cache_hits=12,
    cache_saved_tokens=3400, cache_saved_cost=Decimal("2.25") * 3400 / 20_100, budget_session=None,
    budget_month=None)
UNKNOWN = dataclasses.replace(
    BASE, gpu_model="NVIDIA H100 80GB HBM3", gpu_class="H100", rate_per_hour=None, engine_session_cost=None,
    box_since_boot_cost=None, session_cost=None, today_cost=Decimal(0), month_cost=Decimal(0),
    projected_month=None, idle_cost=None, per_1k_tokens=None, cache_hits=0, cache_saved_cost=None)
BUDGETS = dataclasses.replace(BASE, budget_session=Decimal("3"), budget_month=Decimal("40"), basis="engine",
                              session_cost=Decimal("1.35"))


class _Host(App):
    """The pane in a 42-column side column, as in the console layout."""

    CSS = """
    #main { width: 1fr; }
    #side { width: 42; border-left: vkey $panel-lighten-2; }
    """

    def __init__(self, snapshot: CostSnapshot | None = None) -> None:
        super().__init__()
        self.initial = snapshot

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("chat", id="main")
            yield CostPane(id="side")

    def on_mount(self) -> None:
        self.query_one(CostPane).snapshot = self.initial


def lines(app: App) -> list[str]:
    return app.query_one(CostPane).render().plain.splitlines()


async def test_waits_for_the_first_reading_then_ticks():
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        assert lines(app) == ["cost: waiting for the first reading…"]
        pane = app.query_one(CostPane)
        pane.snapshot = BASE
        await pilot.pause()
        text = lines(app)
        assert text[0] == "COST ¥1.8/h · T4 · instance billing"
        assert text[1] == "session    ¥2.25  engine running 45m"
        assert "box        ¥2.25  up 1h15m" in text
        assert "today      ¥3.60  month ¥41.20" in text
        assert "projected  ¥612.40 this month" in text
        assert "per 1K tok ¥0.1119  (20,100 tok out)" in text
        assert "idle       ¥0.21 wasted (7m)" in text
        assert "cache      12 hits (25%) ≈ ¥0.38 saved" in text
        assert not any("cap" in line for line in text)
        pane.snapshot = dataclasses.replace(BASE, session_cost=Decimal("2.26"))
        await pilot.pause()
        assert lines(app)[1].startswith("session    ¥2.26")
        assert pane.size.height == len(lines(app))  # height follows the content


async def test_price_unknown_is_a_state():
    app = _Host(UNKNOWN)
    async with app.run_test(size=(80, 24)):
        text = lines(app)
        assert text[0] == "COST ?/h · H100 · instance billing"
        assert text[1] == "price unknown: set cost.price_per_hour"
        assert "today      ¥0.00+?  month ¥0.00+?" in text
        assert "session    ?  engine running 45m" in text
        assert "per 1K tok no tokens generated yet" in text


async def test_budget_bars_and_ledger_error():
    app = _Host(dataclasses.replace(BUDGETS, ledger_error="ledger /x is locked by another process"))
    async with app.run_test(size=(80, 24)):
        text = lines(app)
        assert "sess. cap  █████░░░░░░░ 45% of ¥3" in text
        assert "month cap  ████████████ 103% of ¥40" in text
        assert text[-1] == "ledger: ledger /x is locked by another process"


def test_budget_helpers_and_header():
    assert budget_fraction(Decimal("1.5"), Decimal("3")) == 0.5
    assert budget_fraction(Decimal("1"), None) is None and budget_fraction(None, Decimal("1")) is None
    bar = budget_bar(0.8)
    assert bar.plain == "██████████░░ 80%" and bar.spans[0].style == "yellow"
    assert budget_bar(1.5).plain == "████████████ 150%" and budget_bar(1.5).spans[0].style == "red"
    assert budget_bar(0.1).spans[0].style == "green"
    assert header_text(BASE) == "¥1.8/h · session ¥2.25"
    assert header_text(UNKNOWN) == "cost: price unknown" and header_text(None) == ""


def test_snapshot_running_80x24(snap_compare):
    """You should see, in a 42-column side column: COST ¥1.8/h · T4 · instance billing, then session
    ¥2.25 (engine running 45m), box ¥2.25 up 1h15m, today ¥3.60 month ¥41.20, projected  ¥612.40,
    per 1K tok ¥0.1119, idle ¥0.21 wasted (yellow) and a green cache line with 12 hits."""
    assert snap_compare(_Host(BASE), terminal_size=(80, 24))


def test_snapshot_budgets_120x40(snap_compare):
    """You should see the pane with engine billing and two budget bars: session 45% (green) of ¥3 and
    month 103% (red, full) of ¥40."""
    assert snap_compare(_Host(BUDGETS), terminal_size=(120, 40))


def test_snapshot_price_unknown(snap_compare):
    """You should see COST ?/h (yellow) for an H100, a yellow 'price unknown: set cost.price_per_hour'
    line, '?' in place of every amount that needs the price, and today/month as ¥0.00+?."""
    assert snap_compare(_Host(UNKNOWN), terminal_size=(80, 24))
