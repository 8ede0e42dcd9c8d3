"""Fleet pane: rows per worker (up/down, running, queued, KV, tok/s, cost) and gateway counters."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from qwentui.telemetry.fleet import FleetSnapshot, GatewayCounters, WorkerRow, parse_gateway, row
from qwentui.telemetry.metrics import EngineMetrics
from qwentui.ui.widgets.fleet import FleetPane, gateway_text, worker_text
from qwentui.ui.widgets.gpu import Line

A, B, C = "http://10.0.0.11:30000", "http://10.0.0.12:30000", "http://10.0.0.13:30000"
GW = GatewayCounters(True, health={A: True, B: True, C: False}, in_flight={A: 4.0, B: 3.0},
                     requests_total=1234.0, upstream_errors_total=7.0, retries_total=5.0)
SNAP = FleetSnapshot(1_700_000_000.0, "http://127.0.0.1:30080", (
    WorkerRow(A, True, True, 4.0, 2.0, 41.0, 512.0, 4.0, "Qwen/Qwen3-1.7B"),
    WorkerRow(B, True, True, 3.0, 0.0, 12.5, 388.0, 3.0, "Qwen/Qwen3-1.7B"),
    WorkerRow(C, False, False, error="connection refused"),
), GW)

SMG_TEXT = f"""# TYPE smg_worker_health gauge
smg_worker_health{{worker="{A}"}} 1
smg_worker_health{{worker="{C}"}} 0
# TYPE smg_worker_cb_state gauge
smg_worker_cb_state{{worker="{C}"}} 1
# TYPE smg_worker_requests_active gauge
smg_worker_requests_active{{worker="{A}"}} 4
# TYPE smg_router_requests_total counter
smg_router_requests_total{{router_type="http",endpoint="chat",streaming="false"}} 10
smg_router_requests_total{{router_type="http",endpoint="chat",streaming="true"}} 5
# TYPE smg_router_upstream_responses_total counter
smg_router_upstream_responses_total{{router_type="http",status_code="200",error_code=""}} 13
smg_router_upstream_responses_total{{router_type="http",status_code="502",error_code="x"}} 2
# TYPE smg_worker_retries_total counter
smg_worker_retries_total{{worker="{A}"}} 3
"""


def test_gateway_metrics_parse():
    gw = parse_gateway(SMG_TEXT)
    assert gw.available and gw.health == {A: True, C: False} and gw.circuit_open == {C: True}
    assert gw.in_flight == {A: 4.0}
    assert (gw.requests_total, gw.upstream_errors_total, gw.retries_total) == (15.0, 2.0, 3.0)
    assert not parse_gateway("{{{ not prometheus").available


def test_row_joins_worker_metrics_and_gateway_view():
    gw = parse_gateway(SMG_TEXT)
    up = row(A, EngineMetrics(True, running=2.0, queued=1.0, token_usage=0.25, gen_throughput=90.0), gw)
    assert up.up and up.kv_pct == 25.0 and up.in_flight == 4.0 and up.cost == "cost unknown"
    down = row(C, EngineMetrics(True, running=0.0), gw)
    assert down.reachable and down.gateway_up is False and not down.up  # reachable, but not routed to
    gone = row(B, EngineMetrics.unavailable("connection refused"), GatewayCounters(False, "x"))
    assert not gone.up and gone.gateway_up is None and gone.error == "connection refused"


def test_texts():
    assert "down (gateway)" in worker_text(SNAP.rows[2]).plain
    assert "run 4 queue 2 KV 41% 512 tok/s" in worker_text(SNAP.rows[0]).plain
    assert "cost unknown" in worker_text(SNAP.rows[0]).plain
    assert "2/3 up" in gateway_text(SNAP).plain and "routed 1234" in gateway_text(SNAP).plain


class _Host(App):
    CSS = """
    #main { width: 1fr; }
    #side { width: 42; border-left: vkey $panel-lighten-2; }
    """

    def __init__(self, snap: FleetSnapshot | None = SNAP, sampler=None) -> None:
        super().__init__()
        self.snap, self.sampler = snap, sampler

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("chat", id="main")
            yield FleetPane(self.sampler, interval=0.05, id="side")

    def on_mount(self) -> None:
        if self.snap is not None:
            self.query_one(FleetPane).snapshot = self.snap


class _Sampler:
    def __init__(self) -> None:
        self.calls, self.closed = 0, False

    async def sample(self) -> FleetSnapshot:
        self.calls += 1
        return SNAP

    async def aclose(self) -> None:
        self.closed = True


async def test_pane_polls_its_sampler_and_closes_it():
    sampler = _Sampler()
    app = _Host(None, sampler)
    async with app.run_test() as pilot:
        for _ in range(40):
            await pilot.pause(0.05)
            if sampler.calls >= 2:
                break
        lines = [w.text.plain for w in app.query(Line)]
        assert sampler.calls >= 2
        assert any("10.0.0.13:30000" in t and "down" in t for t in lines)
    assert sampler.closed


def test_snapshot_fleet_80x24(snap_compare):
    assert snap_compare(_Host(), terminal_size=(80, 24))


def test_snapshot_fleet_120x40(snap_compare):
    assert snap_compare(_Host(), terminal_size=(120, 40))


async def test_console_shows_the_fleet_pane_in_place_of_the_gpu_pane():
    from qwentui.ui.app import make_app
    from qwentui.ui.widgets.gpu import GpuPane
    from tests.test_runtime import cfg_with, make

    cfg = cfg_with()
    rt, sup, _clock, _seen = make(cfg)
    app = make_app(cfg, supervisor=sup, runtime=rt)
    app.fleet_pane = FleetPane(_Sampler(), interval=0.05, id="fleet")  # what `qwentui fleet --console` sets
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(40):
            await pilot.pause(0.05)
            if app.query_one(FleetPane).snapshot is not None:
                break
        assert not app.query(GpuPane)
        pane = app.query_one(FleetPane)
        assert pane.snapshot is SNAP and pane.region.width > 0  # on screen beside the chat at 120x40
        assert [name for name, _ in app.side_panes()] == ["fleet", "cost"]  # F3 is the fleet pane


async def test_hidden_fleet_tab_does_not_scrape_until_shown():
    from qwentui.ui.app import make_app
    from tests.test_runtime import cfg_with, make

    cfg = cfg_with()
    rt, sup, _clock, _seen = make(cfg)
    app = make_app(cfg, supervisor=sup, runtime=rt)
    sampler = _Sampler()
    app.fleet_pane = FleetPane(sampler, interval=0.05, id="fleet")
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: side panes are tabs behind the chat
        await pilot.pause(0.3)
        assert sampler.calls == 0
        await pilot.press("f3")
        for _ in range(40):
            await pilot.pause(0.05)
            if sampler.calls:
                break
        assert sampler.calls >= 1 and app.query_one(FleetPane).snapshot is SNAP
