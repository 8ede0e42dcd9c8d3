"""The what-if against the fleet: each worker's busy intervals, recorded apart from this box's,
and `report --what-if --worker URL` replaying them at that worker's price."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal

import pytest

from qwentui import cli
from qwentui.commands.fleet import Books
from qwentui.cost.activity import WorkerActivity
from qwentui.cost.fleetbook import FleetBook
from qwentui.cost.ledger import Ledger, default_path
from qwentui.telemetry.fleet import FleetSnapshot, GatewayCounters, WorkerRow
from tests.test_cost_activity import Book
from tests.test_whatif import one_error

A, B = "http://10.0.0.1:30000", "http://10.0.0.2:30000"


def worker(url: str, running: float = 0, queued: float = 0, requests: float = 0, up: bool = True) -> WorkerRow:
    if not up:
        return WorkerRow(url, False, False, error="connection refused")
    return WorkerRow(url, True, True, running=running, queued=queued, prompt_tokens_total=requests * 10,
                     generation_tokens_total=requests * 100, requests_total=requests)


def snap(at: float, *rows: WorkerRow) -> FleetSnapshot:
    return FleetSnapshot(at, "http://127.0.0.1:30080", rows, GatewayCounters(True))


# -- recording ---------------------------------------------------------------------------

def test_a_worker_is_busy_while_it_runs_or_queues_or_its_counters_move():
    book = Book()
    rec = WorkerActivity(lambda: book, [A, B], tick=2.0)
    rec.observe(snap(100, worker(A, requests=5), worker(B, requests=9)))  # first reading: only a baseline
    rec.observe(snap(102, worker(A, running=1, requests=5), worker(B, queued=2, requests=9)))
    rec.observe(snap(104, worker(A, requests=6), worker(B, up=False)))  # A's counters moved; B is down
    rec.observe(snap(106, worker(A, requests=6), worker(B, requests=9)))  # both quiet
    assert book.rows == []  # A's interval is still open: 106 - 104 < the gap
    rec.observe(snap(110, worker(A, requests=6), worker(B, requests=9)))
    assert sorted(book.rows) == [(102, 102, f"worker {B}"), (102, 104, f"worker {A}")]
    rec.observe(snap(112, worker(A, requests=6), worker(B, requests=12)))  # B restarted or moved: busy
    rec.flush()
    assert book.rows[-1] == (112, 112, f"worker {B}")


def test_the_gap_covers_slow_ticks():
    book = Book()
    rec = WorkerActivity(lambda: book, [A], tick=10.0)  # a 10 s tick: 15 s gap, not the local 5 s
    for t in (100, 110, 120):
        rec.observe(snap(t, worker(A, running=1)))
    rec.flush()
    assert book.rows == [(100, 120, f"worker {A}")]


def test_the_ledger_keeps_worker_activity_apart_from_this_boxs(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as led:
        led.add_activity(100, 110, "console")
        led.add_activity(120, 130, f"worker {A}")
        led.add_activity(140, 150, f"worker {B}")
        assert led.activity() == [(100, 110)]
        assert led.activity(worker=A) == [(120, 130)]
        assert led.activity(135, 200, worker=B) == [(140, 150)]
        assert led.active_workers() == [A, B]
        assert led.active_workers(0, 115) == []


class FakeSampler:
    def __init__(self, snapshots: list[FleetSnapshot]) -> None:
        self.snapshots, self.closed = list(snapshots), False

    async def sample(self) -> FleetSnapshot:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    async def aclose(self) -> None:
        self.closed = True


def test_the_fleets_books_record_each_workers_activity_and_close_it(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    book = FleetBook(ledger, [A, B], {A: Decimal("2.5"), B: None}, at=90.0)
    sampler = FakeSampler([snap(100, worker(A), worker(B)), snap(102, worker(A, running=2), worker(B)),
                           snap(104, worker(A, running=1, requests=3), worker(B))])

    async def go() -> None:
        books = Books(book, sampler, 30.0, print)
        books._task.cancel()  # drive the ticks by hand instead of the timer
        for _ in range(2):
            await books._tick(record=False)
        await books.close("user")  # the last tick, then the open interval is written

    asyncio.run(go())
    with Ledger(tmp_path / "l.sqlite3", read_only=True) as led:
        assert led.activity(worker=A) == [(102, 104)]
        assert led.activity(worker=B) == [] and led.activity() == []
        assert {r.worker: r.stop_reason for r in led.sessions()} == {A: "user", B: "user"}
    assert sampler.closed


# -- report --what-if --worker -------------------------------------------------------------

def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2025, 4, day, hour, minute).timestamp()  # local time, like --month


@pytest.fixture
def fleet_ledger():
    """April 2025: this box chatted twice (2 min cold starts), worker A was busy three times."""
    with Ledger(default_path()) as led:
        sid = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(10, 9))
        led.close_session(sid, "user", at=at(10, 12))
        led.add_engine_start(at(10, 9), at(10, 9, 2))
        led.add_activity(at(10, 9, 5), at(10, 9, 10), "console")
        led.add_activity(at(10, 11), at(10, 11, 30), "api")
        book = FleetBook(led, [A], {A: Decimal("2.5")}, at=at(12, 8))
        book.close("user", at=at(12, 18))
        for start, end in ((at(12, 8, 30), at(12, 9)), (at(12, 12), at(12, 12, 10)), (at(12, 17), at(12, 17, 1))):
            led.add_activity(start, end, f"worker {A}")


def what_if(capsys, *extra: str) -> tuple[dict, str]:
    assert cli.main(["report", "--what-if", "--month", "2025-04", "--format", "json", *extra]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_without_worker_the_replay_is_this_box_and_names_the_workers(fleet_ledger, capsys):
    data, err = what_if(capsys)
    assert data["intervals"] == 2 and data["cold_start_s"] == 120.0  # this box's measured one
    assert data["price_per_hour"] == 1.8  # not the worker's 2.5
    (line,) = err.strip().splitlines()
    assert A in line and "--worker URL" in line


def test_worker_replays_its_own_activity_at_its_price(fleet_ledger, capsys):
    data, err = what_if(capsys, "--worker", A + "/", "--cold-start", "1m", "--timeouts", "5m,never")
    assert err == "" and data["intervals"] == 3 and data["price_per_hour"] == 2.5
    assert data["current_timeout_s"] is None  # idle.timeout is this box's setting, not the worker's
    assert [r["timeout_s"] for r in data["rows"]] == [300.0, None]  # this box's 30m is not added
    five = data["rows"][0]  # three periods: 1 min cold start + busy + 5 min each
    assert five["cold_starts"] == 3 and five["billed_hours"] == round((3 * 6 + 30 + 10 + 1) / 60, 4)
    assert five["cost"] == pytest.approx(five["billed_hours"] * 2.5, abs=1e-4)
    data, _ = what_if(capsys, "--worker", A, "--cold-start", "1m", "--price", "4")
    assert data["price_per_hour"] == 4.0
    assert cli.main(["report", "--what-if", "--month", "2025-04", "--worker", A, "--cold-start", "1m",
                     "--timeouts", "15m,never"]) == 0
    table = capsys.readouterr().out
    assert f"worker {A}" in table and "¥2.5/h" in table and "cheapest" in table and "current" not in table


def test_worker_price_from_fleet_prices_when_no_session_in_the_period(capsys, tmp_path):
    with Ledger(default_path()) as led:
        led.add_activity(at(12, 8), at(12, 9), f"worker {B}")
    config = tmp_path / "c.toml"
    config.write_text(f'[fleet]\nprices = {{"{B}" = 3.25}}\n')
    assert cli.main(["--config", str(config), "report", "--what-if", "--month", "2025-04", "--format", "json",
                     "--worker", B, "--cold-start", "1m"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["price_per_hour"] == 3.25 and data["intervals"] == 1


def test_worker_bad_inputs_are_one_line(fleet_ledger, capsys):
    assert "no measured cold start for a fleet worker" in one_error(capsys, ["report", "--what-if", "--month",
                                                                             "2025-04", "--worker", A])
    err = one_error(capsys, ["report", "--what-if", "--worker", "http://nope:1", "--cold-start", "1m"])
    assert "--worker http://nope:1: no such fleet worker" in err and A in err
    assert "is not an http(s) URL" in one_error(capsys, ["report", "--what-if", "--worker", "box-a"])
    assert "--worker needs --what-if" in one_error(capsys, ["report", "--worker", A])
    assert "use either --trace or --worker" in one_error(capsys, ["report", "--trace", "t.jsonl", "--worker", A])


def test_a_known_worker_without_activity_in_the_period_says_so(fleet_ledger, capsys):
    assert cli.main(["report", "--what-if", "--month", "2025-03", "--worker", A]) == 0
    out = capsys.readouterr()
    assert "no recorded activity for this period" in out.out and f"worker {A}" in out.out and out.err == ""
