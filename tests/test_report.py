"""`qwentui report`: numbers against hand-computed sums, the seed's tables, formats, bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import time
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from qwentui import cli
from qwentui.config import Config
from qwentui.cost import report
from qwentui.cost.ledger import Ledger, default_path

SH = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(2025, month, day, hour, minute, tzinfo=SH).timestamp()


@pytest.fixture
def shanghai(monkeypatch):
    """The CLI shows local time: pin it to a DST-free zone."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def add(led: Ledger, start: float, stop: float | None, gpu: str = "T4", price: str = "1.8",
        tokens=(0, 0, 0), reason: str = "user", cache=(0, 0)) -> int:
    sid = led.open_session({"T4": "Tesla T4", "A10G": "NVIDIA A10G"}.get(gpu, gpu), Decimal(price),
                           gpu_class=gpu, at=start)
    led.heartbeat(sid, *tokens, at=start)
    if any(cache):
        led.add_cache_savings(sid, *cache)
    if stop is not None:
        led.close_session(sid, reason, at=stop)
    return sid


@pytest.fixture
def april():
    """Three sessions: one crossing into May, two GPUs, tokens and cache hits."""
    with Ledger(default_path()) as led:
        add(led, at(4, 30, 10), at(4, 30, 10, 45), tokens=(1000, 3000, 10), cache=(2, 600))  # ¥1.35
        add(led, at(4, 30, 23, 30), at(5, 1, 0, 30), tokens=(0, 1200, 4), reason="idle")  # ¥0.9 + ¥0.9
        add(led, at(4, 15, 9), at(4, 15, 11), gpu="A10G", price="3.0", tokens=(0, 4000, 8),
            reason="batch-done")  # ¥6
    return default_path()


def build(start: float, end: float, now: float | None = None, reference: str | None = "A10G"):
    with Ledger(default_path(), read_only=True) as led:
        rows = led.sessions(start, end)
    return report.build(rows, start, end, cfg=Config(), title="t", now=now or end, tz=SH, reference=reference)


def test_month_totals_match_hand_computed_sums(april):
    r = build(at(4, 1), at(5, 1))
    assert [s.id for s in r.sessions] == [3, 1, 2]
    days = {b.key: b for b in r.days}
    assert list(days) == ["2025-04-15", "2025-04-30"]
    assert days["2025-04-15"].cost == Decimal("6.0")
    assert days["2025-04-30"].cost == Decimal("1.35") + Decimal("0.9")  # the idle session's April half
    assert days["2025-04-30"].tokens_out == 3000 + 600 and days["2025-04-30"].sessions == 2
    assert days["2025-04-30"].minutes == 45 + 30
    assert [(b.key, b.cost) for b in r.months] == [("2025-04", Decimal("8.25"))]
    gpus = {b.key: b for b in r.gpus}
    assert (gpus["T4"].cost, gpus["T4"].sessions, gpus["A10G"].cost) == (Decimal("2.25"), 2, Decimal("6.0"))
    t = r.total
    assert (t.sessions, t.hours, t.cost, t.tokens_in, t.tokens_out, t.requests) == (
        3, Decimal("3.25"), Decimal("8.25"), 1000, 7600, 10 + 2 + 8)
    assert t.per_1k_tokens == Decimal("8.25") * 1000 / 7600
    assert (t.cache_hits, t.cache_saved) == (2, 600)
    assert round(t.cache_saved_cost, 12) == round(Decimal("8.25") * 600 / 7600, 12)


def test_a_range_over_the_month_edge_splits_by_day(april):
    r = build(at(4, 30), at(5, 2))
    assert [(b.key, b.cost, b.tokens_out) for b in r.days] == [
        ("2025-04-30", Decimal("2.25"), 3600), ("2025-05-01", Decimal("0.9"), 600)]
    assert [(b.key, b.cost) for b in r.months] == [("2025-04", Decimal("2.25")), ("2025-05", Decimal("0.9"))]
    assert r.total.cost == Decimal("3.15") and r.total.sessions == 2


def test_always_on_comparison_for_a_month(april):
    r = build(at(4, 1), at(5, 1))
    same, actual = r.compare  # the main GPU (by time) is the A10G, so no separate reference row
    assert (same.gpu, same.hours_per_week) == ("A10G", 168)
    assert (same.weekly, same.yearly) == (Decimal("504.0"), Decimal("26208.0"))
    weeks = Decimal(30) / 7
    assert actual.gpu == "mixed" and actual.price_per_hour is None
    assert actual.weekly == Decimal("8.25") / weeks and actual.yearly == actual.weekly * 52


@pytest.fixture
def seed_week():
    """Seed 4.2's 'after': 8 hours a week on a T4 at ¥1.8 (four 2-hour sessions)."""
    with Ledger(default_path()) as led:
        for day in (28, 29, 1, 3):
            month = 4 if day > 5 else 5
            add(led, at(month, day, 9), at(month, day, 11), tokens=(1000, 4000, 20))
    return default_path()


SEED_TABLE = """\
Compared with always-on (52 weeks a year)
  scenario             hours/week  GPU   price/h  weekly     yearly
  always-on, same GPU       168 h  T4       ¥1.8  ¥302.4  ¥15,724.8
  always-on, A10G           168 h  A10G     ¥3.0    ¥504    ¥26,208
  actual                      8 h  T4       ¥1.8   ¥14.4     ¥748.8
  vs always-on, same GPU: saving 95.2%: ¥15,724.8 → ¥748.8 a year (¥14,976 less, 52 weeks a year)
  vs always-on, A10G: saving 97.1%: ¥26,208 → ¥748.8 a year (¥25,459.2 less, 52 weeks a year)
"""


def test_the_seeds_before_after_table_from_a_weeks_sessions(seed_week, shanghai, capsys):
    assert cli.main(["report", "--from", "2025-04-28", "--to", "2025-05-04"]) == 0
    out = capsys.readouterr().out
    assert SEED_TABLE in out
    assert out.startswith("qwentui cost report: 2025-04-28 to 2025-05-04 "
                          "(2025-04-28 to 2025-05-04, local time, CNY)\n")


def test_the_seeds_dashboard_fields_in_the_session_list(april, shanghai, capsys):
    assert cli.main(["report", "--month", "2025-04"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.strip().startswith("#"))
    assert header.split()[:7] == ["#", "start", "stop", "minutes", "GPU", "price/h", "cost"]
    row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert row.split()[1:9] == ["2025-04-30", "10:00", "2025-04-30", "10:45", "45", "T4", "¥1.8", "¥1.35"]
    assert "  total         3   3.25  ¥8.25      1,000       7,600   ¥1.0855" in out


def test_json_report(april, shanghai, capsys):
    assert cli.main(["report", "--month", "2025-04", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["from"] == "2025-04-01T00:00:00+08:00" and data["to"] == "2025-05-01T00:00:00+08:00"
    assert [s["cost"] for s in data["sessions"]] == ["6", "1.35", "1.8"]
    assert data["sessions"][1]["start_utc"] == "2025-04-30T02:00:00.000Z"
    assert data["total"]["cost"] == "8.25" and data["total"]["tokens_out"] == 7600
    assert data["total"]["cache_hits"] == 2 and data["total"]["cache_saved_tokens"] == 600
    assert data["always_on"]["scenarios"][0]["yearly"] == "26208"
    assert data["always_on"]["savings"][0]["pct"] == "99.6"


def test_csv_report(april, shanghai, capsys):
    assert cli.main(["report", "--month", "2025-04", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    sessions = [r for r in rows if r["kind"] == "session"]
    seed = sessions[1]
    assert (seed["start"], seed["stop"]) == ("2025-04-30T10:00:00+08:00", "2025-04-30T10:45:00+08:00")
    assert (seed["minutes"], seed["gpu_class"], seed["price_per_hour"], seed["cost"]) == ("45", "T4", "1.8", "1.35")
    totals = {(r["kind"], r["key"]): r for r in rows if r["kind"] != "session"}
    assert totals[("day", "2025-04-30")]["cost"] == "2.25"
    assert totals[("gpu", "A10G")]["cost"] == "6"
    assert totals[("total", "total")]["cost"] == "8.25"
    assert sum(Decimal(r["cost"]) for r in rows if r["kind"] == "day") == Decimal("8.25")


def test_open_sessions_count_up_to_their_heartbeat(shanghai, capsys):
    with Ledger(default_path()) as led:
        sid = add(led, at(4, 30, 10), None)
        led.heartbeat(sid, 1, 2, 3, at=at(4, 30, 11))
    assert cli.main(["report", "--month", "2025-04", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sessions"][0]["open"] and data["sessions"][0]["cost"] == "1.8"
    assert "last heartbeat" in data["notes"][0]


def test_from_alone_runs_to_today(april, capsys):
    from qwentui.commands.report import run

    args = cli.build_parser().parse_args(["report", "--from", "2025-04-30", "--format", "json"])
    assert run(args, clock=lambda: at(5, 20, 12), tz=SH) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["from"], data["to"]) == ("2025-04-30T00:00:00+08:00", "2025-05-21T00:00:00+08:00")
    assert data["total"]["cost"] == "3.15" and data["total"]["sessions"] == 2


def test_empty_and_missing_ledger(shanghai, capsys):
    assert cli.main(["report", "--month", "2025-04"]) == 0
    assert "no sessions in this period" in capsys.readouterr().out
    assert not default_path().exists()  # a report never creates the ledger


def test_report_does_not_modify_the_ledger(april, shanghai, capsys):
    digest = hashlib.sha256(april.read_bytes()).hexdigest()
    assert cli.main(["report"]) == 0
    assert hashlib.sha256(april.read_bytes()).hexdigest() == digest


def test_locked_ledger_falls_back_to_read_only(april, shanghai, capsys):
    holder = sqlite3.connect(april, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")
    try:
        assert cli.main(["report", "--month", "2025-04", "--format", "json"]) == 0
    finally:
        holder.close()
    out, err = capsys.readouterr()
    assert json.loads(out)["total"]["cost"] == "8.25"
    assert err.startswith("qwentui: warning: ledger ") and "locked" in err


def _one_error_line(capsys, argv: list[str], code: int = 2) -> str:
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qwentui: error: "), captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--month", "2026-13"], "--month must be YYYY-MM with a month 01-12, got '2026-13'"),
    (["--month", "April"], "--month must be YYYY-MM"),
    (["--from", "2025-05-04", "--to", "2025-04-28"], "--from 2025-05-04 is after --to 2025-04-28"),
    (["--from", "2025-02-30"], "--from must be a date YYYY-MM-DD, got '2025-02-30'"),
    (["--to", "2025-04-28"], "--to needs --from"),
    (["--month", "2025-04", "--from", "2025-04-01"], "either --month or --from/--to"),
    (["--vs-gpu", "B200"], "unknown GPU 'B200': known GPUs are A100, A10G, L4, T4"),
])
def test_bad_input(argv, message, capsys):
    assert message in _one_error_line(capsys, ["report", *argv])


def test_newer_schema_is_refused(capsys):
    Ledger(default_path()).close()
    conn = sqlite3.connect(default_path())
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    line = _one_error_line(capsys, ["report"])
    assert "schema version 9, newer than this qwentui understands (2)" in line


def test_corrupt_ledger_is_reported_and_kept(capsys):
    path = default_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage" * 1000)
    line = _one_error_line(capsys, ["report"])
    assert "is damaged" in line and "left untouched" in line
    assert path.read_bytes() == b"\x00garbage" * 1000


def test_simulated_sessions_have_their_own_ledger(capsys):
    """`--demo` sessions never reach the real bill; `qwentui --demo report` shows them."""
    from qwentui.cli import main
    from qwentui.cost.ledger import path_for

    assert path_for("sglang") == default_path() and path_for("sim") != default_path()
    with Ledger(path_for("sim")) as led:
        sid = led.open_session("T4 (SIMULATED)", Decimal("1.8"), "sim", gpu_class="T4")
        led.close_session(sid, "user")
    assert main(["report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"] == []
    assert main(["--demo", "report", "--format", "json"]) == 0
    assert [s["engine_kind"] for s in json.loads(capsys.readouterr().out)["sessions"]] == ["sim"]


@pytest.mark.parametrize("column, value", [("price_per_hour", "Infinity"), ("cost", "NaN"), ("price_per_hour", "abc")])
def test_report_skips_an_unreadable_row_and_names_it(april, shanghai, capsys, column, value):
    conn = sqlite3.connect(april)
    conn.execute(f"UPDATE sessions SET {column} = ? WHERE id = 2", (value,))
    conn.commit()
    conn.close()
    assert cli.main(["report", "--month", "2025-04", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert [s["id"] for s in json.loads(captured.out)["sessions"]] == [3, 1]
    assert captured.err.splitlines() == [
        f"qwentui: warning: skipped a ledger row that cannot be read: session 2: {column} {value!r} "
        "is not a finite number"]


def test_non_finite_price_is_refused_before_it_reaches_the_ledger(monkeypatch, capsys):
    monkeypatch.setenv("QWENTUI_COST_PRICE_PER_HOUR", "inf")
    line = _one_error_line(capsys, ["report"])
    assert "QWENTUI_COST_PRICE_PER_HOUR must be a finite number" in line
    assert not default_path().exists()
