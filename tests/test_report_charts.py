"""The report's pictures: cost per day split busy / idle / cold start, the what-if curve, and
the F8 screen with them (Pilot + snapshots at 80×24 and 120×40)."""

from __future__ import annotations

import dataclasses
from datetime import timezone
from decimal import Decimal

import pytest
from textual.widgets import DataTable, TabbedContent

from qwentui.config import Config
from qwentui.cost import charts
from qwentui.cost.ledger import SessionRow
from qwentui.ui.app import make_app
from qwentui.ui.screens.report import ReportScreen
from tests.test_ui_chat import READY
from tests.waits import wait_until
from tests.test_ui_ux import fixed_report

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC
H = 3600.0


def row(start: float, stop: float, price: str = "3.0") -> SessionRow:
    return SessionRow(id=1, start=start, stop=stop, heartbeat=stop, minutes=None, pid=None, gpu_model="A10G",
                      gpu_class="A10G", price_per_hour=Decimal(price), currency="CNY", tokens_in=0,
                      tokens_out=0, requests=0, cache_hits=0, cache_saved=0, stop_reason="idle",
                      engine_kind="sglang", cost=None)


def test_a_day_splits_into_busy_idle_and_cold_start():
    rows = [row(START + H, START + 3 * H)]  # ¥6 on Jan 1
    busy = [(START + H + 600, START + H + 1800), (START + 2 * H, START + 2 * H + 900)]  # 35 min
    starts = [(START + H, START + H + 120)]  # 2 min cold start
    (jan1, jan2) = charts.daily_costs(rows, busy, starts, START, START + 2 * 86400, timezone.utc)
    assert jan1.day == "2026-01-01" and jan1.total == Decimal("6")
    assert (jan1.cold, jan1.busy) == (Decimal("0.1"), Decimal("1.75"))
    assert jan1.idle == Decimal("6") - Decimal("0.1") - Decimal("1.75")
    assert jan2.total == 0


def pictured_report():
    rep = fixed_report()  # two A10G sessions: Jan 1 01:00-03:00 and Jan 2 00:00-00:30
    busy = [(START + H + 300, START + H + 1500), (START + 2 * H, START + 2 * H + 600),
            (START + 86400 + 120, START + 86400 + 900)]
    starts = [(START + H, START + H + 90), (START + 86400, START + 86400 + 60)]
    cfg = dataclasses.replace(Config(), cost=dataclasses.replace(Config().cost, budget_month=100.0))
    return charts.with_activity(rep, busy, starts, cfg, now=START + 5 * 86400)


def test_with_activity_adds_the_days_and_the_what_if():
    rep = pictured_report()
    assert rep.recorded and len(rep.daily) == 31 and rep.budget_month == 100.0
    assert sum(d.total for d in rep.daily) == rep.total.cost == Decimal("7.5")
    w = rep.whatif
    assert w.cold_start_ms == 75_000  # the median of 90 s and 60 s
    assert [r.timeout_ms for r in w.rows] == [300_000, 900_000, 1_800_000, 3_600_000, None]
    assert w.current is w.rows[2] and w.price == Decimal("3.0")


def test_charts_draw_in_a_terminal():
    rep = pictured_report()
    days = charts.terminal_chart(charts.draw_days, rep.daily, currency="CNY", budget_month=100.0,
                                 width=90, height=16)
    assert "busy" in days and "cold start" in days and "budget 100/month" in days and " 05 " in days and "30" in days
    curve = charts.terminal_chart(charts.draw_what_if, rep.whatif, currency="CNY", width=90, height=16)
    assert "cold starts" in curve and "never" in curve and "30m" in curve


def _app(loader):
    app = make_app(Config(), status=READY)
    app.report_loader = loader
    return app


async def test_f8_shows_the_chart_first_and_the_what_if_table():
    app = _app(pictured_report)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f8")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        table = screen.query_one("#table-whatif", DataTable)
        await wait_until(pilot, lambda: table.row_count == 6)
        assert screen.query_one(TabbedContent).active == "tab-chart"
        await pilot.press("l")
        assert screen.query_one(TabbedContent).active == "tab-whatif" and app.focused is table
        labels = [table.get_row_at(i)[0] for i in range(6)]
        assert labels == ["5m", "15m", "30m", "1h", "never", "oracle"]
        assert "current" in table.get_row_at(2)[-1]


def _loaded(app) -> bool:
    tables = app.screen.query("#table-whatif")
    return bool(tables) and tables.first().row_count == 6


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_report_chart_snapshot(snap_compare, size):
    """You should see the Chart tab active: "Cost per day (CNY): busy / idle / cold start · budget
    100/month = 3.23/day" with stacked bars on days 01 and 02, a legend, and a red budget line."""
    async def run_before(pilot) -> None:
        await pilot.press("f8")
        await wait_until(pilot, lambda: _loaded(pilot.app))
        await pilot.pause()

    assert snap_compare(_app(pictured_report), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_report_what_if_snapshot(snap_compare, size):
    """You should see the What-if tab: the cost and cold-start curve over 5m … never, and the
    table below it with "current" on 30m and the oracle row."""
    async def run_before(pilot) -> None:
        await pilot.press("f8")
        await wait_until(pilot, lambda: _loaded(pilot.app))
        await pilot.press("l")
        await pilot.pause()

    assert snap_compare(_app(pictured_report), terminal_size=size, run_before=run_before)


async def test_f8_without_an_activity_record_says_so():
    app = _app(fixed_report)  # sessions, but no activity rows (an older ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f8")
        await wait_until(pilot, lambda: app.screen.query("#table-sessions")
                         and app.screen.query_one("#table-sessions").row_count == 2)
        screen = app.screen
        assert screen.report.whatif is None and not screen.report.recorded
        assert screen.query_one("#table-whatif", DataTable).row_count == 0
        await pilot.press("l")
        assert screen.query_one(TabbedContent).active == "tab-whatif"
