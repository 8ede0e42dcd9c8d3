"""F8: this month's cost report (the same numbers as `qwentui report`): the cost per day
chart (busy / idle / cold start), the what-if replay of idle timeouts (curve and table),
and the tables."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from qwentui.cost import charts, whatif
from qwentui.cost import report as cost_report
from qwentui.cost.prices import format_money, format_number, symbol
from qwentui.errors import QwentuiError
from qwentui.ui.screens.base import OperatorScreen
from qwentui.ui.dialogs.save import SaveDialog

SESSION_HEADERS = ("#", "start", "stop", "min", "GPU", "price/h", "cost", "tok in", "tok out", "/1K tok",
                   "cache", "stop reason")
TABS = ("chart", "whatif", "sessions", "days", "gpus")
BUCKET_HEADERS = ("day", "sessions", "hours", "cost", "tok in", "tok out", "/1K tok", "cache hits",
                  "saved tok", "saved")


def month_report(cfg: Any, *, now: float | None = None, ledger_path: Path | None = None) -> cost_report.Report:
    """This month's report from the ledger (read-only; a missing ledger is an empty report)."""
    from qwentui.cost import periods
    from qwentui.cost.ledger import Ledger, path_for

    now = time.time() if now is None else now
    wall = periods.local(now)
    start, end = periods.month_bounds(wall.year, wall.month)
    with Ledger(ledger_path or path_for(cfg.engine.kind), read_only=True) as ledger:
        rows = ledger.sessions(start, end)
        busy, starts, measured = ledger.activity(start, end), ledger.engine_starts(start, end), ledger.cold_starts()
    rep = cost_report.build(rows, start, end, cfg=cfg, title=f"{wall.year:04d}-{wall.month:02d}", now=now)
    return charts.with_activity(rep, busy, starts, cfg, now=now, measured=measured)


def summary_text(rep: cost_report.Report) -> str:
    t, cur = rep.total, rep.currency
    if not rep.sessions:
        return f"{rep.title}: no engine sessions recorded this month ({cur})."
    per_1k = format_money(t.per_1k_tokens, cur, places=4)
    lines = [f"{rep.title}: {format_money(t.cost, cur)} over {format_number(t.hours, 2)} h in "
             f"{t.sessions} session(s) · {format_number(t.tokens_out, 0)} tokens out · {per_1k} per 1K"]
    if rep.compare:
        *before, actual = rep.compare
        lines += [f"vs {b.label}: {cost_report.saving_line(b, actual, cur)}" for b in before]
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


class ReportScreen(OperatorScreen):
    DEFAULT_CSS = """
    ReportScreen #report-summary { height: auto; padding: 0 1; }
    ReportScreen TabbedContent { height: 1fr; }
    ReportScreen DataTable { height: 1fr; }
    ReportScreen #chart-whatif { height: 2fr; }
    ReportScreen #table-whatif { height: 1fr; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="screen-back"),
        Binding("s", "save", "Save", id="report-save"),
        Binding("right,l", "tab(1)", "Next", id="report-next"),
        Binding("left,h", "tab(-1)", "Prev", id="report-prev", show=False),
        Binding("r", "reload", "Reload", id="report-reload"),
        Binding("j", "cursor(1)", "Down", id="report-down", show=False),
        Binding("k", "cursor(-1)", "Up", id="report-up", show=False),
    ]
    TITLE_TEXT = "Cost report — this month"

    def __init__(self, loader: Callable[[], cost_report.Report]) -> None:
        super().__init__()
        self.loader = loader
        self.report: cost_report.Report | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("loading the ledger…", id="report-summary", markup=False)
        with TabbedContent(id="report-tabs"):
            with TabPane("Chart", id="tab-chart"):
                yield PlotextPlot(id="chart-days")
            with TabPane("What-if", id="tab-whatif"):
                yield PlotextPlot(id="chart-whatif")
                yield DataTable(id="table-whatif", zebra_stripes=True, cursor_type="row")
            for name, label in (("sessions", "Sessions"), ("days", "Per day"), ("gpus", "Per GPU")):
                with TabPane(label, id=f"tab-{name}"):
                    yield DataTable(id=f"table-{name}", zebra_stripes=True, cursor_type="row")

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="report", exit_on_error=False, description="read cost ledger")
    def _load(self) -> None:
        try:
            rep = self.loader()
        except QwentuiError as exc:
            self.app.call_from_thread(self._failed, exc.message)
            return
        self.app.call_from_thread(self._show, rep)

    def _failed(self, message: str) -> None:
        self.query_one("#report-summary", Static).update(f"Cannot read the ledger: {message}")

    def _show(self, rep: cost_report.Report) -> None:
        self.report = rep
        cur = rep.currency
        self.set_title_text(f"Cost report — {rep.title} ({cur}, local time)")
        self.query_one("#report-summary", Static).update(summary_text(rep))
        sym = symbol(cur).strip() or cur
        sessions = [cost_report.session_cells(r, cur, rep.tz) for r in rep.sessions]
        self._fill("sessions", [h.replace("/1K", f"{sym}/1K") for h in SESSION_HEADERS], sessions)
        days = [cost_report.bucket_cells(b, cur) for b in (*rep.days, rep.total)] if rep.sessions else []
        self._fill("days", [h.replace("/1K", f"{sym}/1K") for h in BUCKET_HEADERS], days)
        gpus = [cost_report.bucket_cells(b, cur) for b in rep.gpus]
        self._fill("gpus", ["GPU", *[h.replace("/1K", f"{sym}/1K") for h in BUCKET_HEADERS[1:]]], gpus)
        self._draw(rep)

    def _draw(self, rep: cost_report.Report) -> None:
        """The pictures; the what-if tab says why it is empty when there is nothing to replay."""
        days = self.query_one("#chart-days", PlotextPlot)
        daily = rep.daily or charts.daily_costs(rep.sessions, (), (), rep.start, rep.end, rep.tz)
        charts.draw_days(days.plt, daily, currency=rep.currency, budget_month=rep.budget_month,
                         recorded=rep.recorded)
        days.refresh()
        result = rep.whatif
        curve = self.query_one("#chart-whatif", PlotextPlot)
        if result is None:
            curve.plt.clear_data()
            curve.plt.title("What-if: no recorded activity this month (or no measured cold start yet)")
            self._fill("whatif", ["timeout"], [])
        else:
            charts.draw_what_if(curve.plt, result, currency=rep.currency)
            rows = [whatif.cells(result, r, rep.currency) for r in result.rows]
            rows.append(whatif.oracle_cells(result, rep.currency))
            self._fill("whatif", whatif.HEADERS[:-1] + ["mark"], rows)
        curve.refresh()

    def _fill(self, name: str, headers: list[str], rows: list[list[str]]) -> None:
        table = self.query_one(f"#table-{name}", DataTable)
        table.clear(columns=True)
        table.add_columns(*headers)
        table.add_rows(rows)

    def action_tab(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        now = tabs.active.removeprefix("tab-")
        nxt = TABS[(TABS.index(now) + step) % len(TABS)]
        tabs.active = f"tab-{nxt}"
        tables = self.query(f"#table-{nxt}")
        if tables:
            tables.first(DataTable).focus()

    def action_cursor(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        tables = self.query(f"#table-{tabs.active.removeprefix('tab-')}")
        if tables:
            table = tables.first(DataTable)
            table.action_cursor_down() if step > 0 else table.action_cursor_up()

    def action_save(self) -> None:
        if self.report is None:
            return
        text = cost_report.render_table(self.report)
        default = str(Path.cwd() / f"qwentui-report-{self.report.title}-{datetime.now():%H%M%S}.txt")

        def done(path: Path | None) -> None:
            if path is not None:
                self.notify(f"Saved to {path}", timeout=4)

        self.app.push_screen(SaveDialog("Save the report (text table) to", default, text), done)
