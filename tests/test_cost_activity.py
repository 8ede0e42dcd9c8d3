"""The activity record: coalesced busy intervals and engine cold starts, from the runtime."""

from __future__ import annotations

from types import SimpleNamespace

from qwentui.cost.activity import ActivityRecorder
from qwentui.cost.ledger import Ledger
from qwentui.engine.status import EngineState
from qwentui.idle.watchdog import IdleState, IdleStatus, MetricsSample

from tests.test_runtime import BOOT, cfg_with, make, ticks


class Book:
    """A ledger double that keeps what the recorder writes."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, str]] = []
        self.starts: list[tuple[float, float, float | None, str]] = []

    def add_activity(self, start, end, source=""):
        self.rows.append((start, end, source))

    def add_engine_start(self, launch, ready, *, boot_s=None, kind="sglang"):
        self.starts.append((launch, ready, boot_s, kind))


def idle(state: IdleState, seconds_idle: float = 0.0, alive: str = "", last: str = "") -> IdleStatus:
    return IdleStatus(state=state, seconds_idle=seconds_idle, seconds_left=None, reason_alive=alive,
                      reason_action="", warning_started=False, metrics_available=True, last_activity=last)


def test_busy_moments_closer_than_the_gap_are_one_interval():
    book = Book()
    rec = ActivityRecorder(lambda: book, gap=5.0)
    for t in (100, 101, 104, 108.9):
        rec.busy(t, "api")
    rec.busy(120, "console")  # 11.1 s later: a new interval, the first is written
    assert book.rows == [(100, 108.9, "api")]
    rec.close_quiet(124)
    assert len(book.rows) == 1  # still within the gap
    rec.close_quiet(125)
    assert book.rows == [(100, 108.9, "api"), (120, 120, "console")]
    rec.flush()
    assert len(book.rows) == 2


def test_observe_reads_active_ticks_and_the_watchdogs_last_activity():
    book = Book()
    rec = ActivityRecorder(lambda: book, gap=5.0)
    rec.observe(10, idle(IdleState.ACTIVE, alive=""))  # parked (engine starting): not use
    rec.observe(11, idle(IdleState.IDLE, 1.0, last="engine start"))  # the watchdog's own touch
    assert rec.current is None
    rec.observe(12, idle(IdleState.ACTIVE, alive="console chat in flight"))
    rec.observe(13, idle(IdleState.ACTIVE, alive="console chat in flight"))
    rec.observe(14, idle(IdleState.IDLE, 0.5, last="console chat"))  # finished at 13.5
    rec.observe(30, idle(IdleState.IDLE, 2.0, last="API request"))  # counters moved at 28
    rec.observe(31, idle(IdleState.IDLE, 3.0, last="API request"))  # the same moment: not again
    rec.observe(40, idle(IdleState.IDLE, 12.0, last="API request"))
    assert book.rows == [(12, 13.5, "console"), (28, 28, "api")]


def test_engine_start_records_the_measured_cold_start_and_boot():
    book = Book()
    rec = ActivityRecorder(lambda: book, boot_time=lambda: 1000.0)
    starting = SimpleNamespace(state=EngineState.STARTING, started_at=5.0, ready_at=None, kind="sim")
    rec.engine(starting, 1100.0)
    rec.engine(starting, 1101.0)  # a repeated STARTING keeps the first launch
    rec.engine(SimpleNamespace(state=EngineState.READY, started_at=5.0, ready_at=47.5, kind="sim"), 1142.0)
    rec.engine(SimpleNamespace(state=EngineState.READY, started_at=5.0, ready_at=47.5, kind="sim"), 1150.0)
    assert book.starts == [(1100.0, 1142.5, 100.0, "sim")]  # once; booted 100 s before launch
    rec.engine(SimpleNamespace(state=EngineState.STARTING, started_at=None, ready_at=None), 9000.0)
    rec.engine(SimpleNamespace(state=EngineState.READY, started_at=None, ready_at=None), 9030.0)
    assert book.starts[-1] == (9000.0, 9030.0, None, "sglang")  # long after boot: not a boot


def test_ledger_errors_never_stop_the_recorder():
    class Broken:
        def add_activity(self, *a, **k):
            raise ValueError("disk full")

    rec = ActivityRecorder(lambda: Broken())
    rec.busy(1.0)
    rec.flush()
    assert rec.errors == 1
    ActivityRecorder(lambda: None).flush()  # no ledger (attached): nothing to do


async def test_the_runtime_records_chats_api_requests_and_engine_starts():
    busy = MetricsSample(running=1, requests_total=0)
    quiet = MetricsSample(running=0, requests_total=1)
    metrics = [quiet] * 12 + [busy] * 3 + [quiet] * 30
    rt, sup, clock, seen = make(cfg_with(timeout=600.0, warn_before=60.0), metrics=metrics)
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 2)
    rt.console_started()
    await ticks(rt, clock, 4)
    rt.console_finished(5, 7)
    await ticks(rt, clock, 30)
    await rt.restart_engine()
    await ticks(rt, clock, 1)
    await rt.close()
    with Ledger(read_only=True) as ledger:
        rows = ledger.activity()
        starts = ledger.cold_starts()
    rel = [(round(a - BOOT, 3), round(b - BOOT, 3)) for a, b in rows]
    assert rel[0] == (1002.0, 1006.0)  # the chat: first active tick → its finish
    assert len(rel) == 2 and 1012 <= rel[1][0] <= rel[1][1] <= 1016  # the API request seen in /metrics
    assert starts == [0.0]  # the fake supervisor is ready at once
