"""What-if replay: the model against an independent minute-by-minute simulation, the CLI,
its formats and its bad input."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from qwentui import cli
from qwentui.cost import whatif
from qwentui.cost.billing import Billing
from qwentui.cost.ledger import Ledger, default_path

MIN = 60_000
DAY_MIN = 24 * 60
T0 = int(datetime(2025, 4, 1, tzinfo=timezone.utc).timestamp() * 1000)


def random_trace(seed: int, n: int = 600, days: int = 30) -> list[tuple[int, int]]:
    """Whole-minute busy intervals [start, end) in minutes: bursts and lone requests, overlaps allowed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        start = rng.randrange(0, days * DAY_MIN - 120)
        out.append((start, start + rng.choice([1, 1, 2, 3, 5, 8, 13, 30, 60])))
    return out


# -- the brute force: a minute-by-minute simulation, written without the module's helpers --

def simulate(trace, timeout: int | None, cold: int, horizon: int):
    """Minute-by-minute box: (list of period lengths in minutes, cold starts, waited minutes)."""
    busy = [False] * (horizon + 2)
    starts = set()
    for a, b in trace:
        for m in range(a, b):
            busy[m] = True
    for m in range(horizon):
        if busy[m] and (m == 0 or not busy[m - 1]):
            starts.add(m)
    lengths, waited, up, length, idle, ready = [], 0, False, 0, 0, 0
    for m in range(horizon):
        if busy[m]:
            if not up:
                up, length, ready = True, cold, m + cold
            if m in starts and m < ready:
                waited += ready - m
            length += 1
            idle = 0
        elif up:
            length += 1
            idle += 1
            if timeout is not None and idle >= timeout and not busy[m + 1]:
                lengths.append(length)
                up = False
    if up:
        lengths.append(length)
    return lengths, len(lengths), waited


def simulate_oracle(trace, cold: int, horizon: int) -> list[int]:
    busy = [False] * (horizon + 2)
    for a, b in trace:
        for m in range(a, b):
            busy[m] = True
    lengths, m, length, up = [], 0, 0, False
    while m < horizon:
        if busy[m]:
            if not up:
                up, length = True, cold
            length += 1
            m += 1
            continue
        if up:
            gap = 0
            while m + gap < horizon and not busy[m + gap]:
                gap += 1
            if m + gap < horizon and gap < cold:
                length += gap
            else:
                lengths.append(length)
                up = False
            m += gap
            continue
        m += 1
    if up:
        lengths.append(length)
    return lengths


def bill_minutes(length: int, granularity: str, minimum: int) -> int:
    """Rounded up to the unit (in minutes), at least the minimum."""
    unit = {"second": 1, "minute": 1, "hour": 60}[granularity]  # whole minutes: per second = per minute
    return max(-(-length // unit) * unit, minimum)


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


@pytest.mark.parametrize("granularity, minimum", [("second", 0), ("minute", 10), ("hour", 0)])
def test_replay_matches_a_minute_by_minute_simulation(granularity, minimum):
    trace = random_trace(seed=20250430)
    assert len(trace) >= 500
    cold, price = 3, Decimal("1.8")
    last_end = max(b for _, b in trace)
    horizon = 30 * DAY_MIN + 24 * 60  # the window runs to the end of day 31: "never" stays up to it
    spans = [(T0 + a * MIN, T0 + b * MIN) for a, b in trace]
    billing = Billing.of(granularity, minimum * 60)
    timeouts = [1, 5, 15, 30, 60, 120, None]
    result = whatif.run(spans, [None if t is None else t * MIN for t in timeouts], cold_start_ms=cold * MIN,
                        billing=billing, price=price, window=(T0, T0 + horizon * MIN), include_current=False)
    assert [r.timeout_ms for r in result.rows] == [None if t is None else t * MIN for t in timeouts]
    for row, t in zip(result.rows, timeouts):
        lengths, colds, waited = simulate(trace, t, cold, horizon if t is None else last_end + (t or 0) + 5)
        billed = sum(bill_minutes(n, granularity, minimum) for n in lengths)
        assert (row.cold_starts, row.wait_ms) == (colds, waited * MIN), t
        assert row.billed_ms == billed * MIN, t
        assert cents(row.cost) == cents(price * billed / 60), t
    lengths = simulate_oracle(trace, cold, last_end + 5)
    billed = sum(bill_minutes(n, granularity, minimum) for n in lengths)
    assert result.oracle.cold_starts == len(lengths)
    assert cents(result.oracle.cost) == cents(price * billed / 60)
    assert all(r.billed_ms >= result.oracle.billed_ms for r in result.rows) or granularity == "hour"


def test_small_hand_example_and_marks():
    m = MIN
    busy = [(0, 5 * m), (20 * m, 21 * m), (2 * m, 7 * m), (240 * m, 270 * m)]  # unsorted, overlapping
    w = whatif.run(busy, [5 * m, 15 * m, None], cold_start_ms=m, billing=Billing.of("second"),
                   price=Decimal("6"), window=(0, 300 * m), current_ms=30 * m, max_cold_starts_per_day=2)
    rows = {r.timeout_ms: r for r in w.rows}
    # 5m: three periods 1+7+5, 1+1+5, 1+30+5 = 56 min; 15m: 1+21+15, 1+30+15 = 83 min
    assert rows[5 * m].billed_ms == 56 * m and rows[5 * m].cost == Decimal("5.6")
    assert rows[15 * m].billed_ms == 83 * m and rows[15 * m].cold_starts == 2
    assert rows[None].billed_ms == 301 * m and rows[None].cold_starts == 1  # up to the window's end
    assert rows[30 * m].timeout_ms == 30 * m and w.current is rows[30 * m]  # the current one is added
    assert w.oracle.billed_ms == (1 + 7) * m + (1 + 1) * m + (1 + 30) * m and w.oracle.cold_starts == 3
    assert w.cheapest is rows[5 * m]
    # the 300-minute window counts as one day: 5m's 3 cold starts break "≤ 2 a day"
    assert w.cheapest_within_limit is rows[15 * m]
    assert rows[5 * m].wait_ms == 3 * m and rows[15 * m].wait_ms == 2 * m  # each period's first request
    assert rows[30 * m].billed_ms == (1 + 21 + 30 + 1 + 30 + 30) * m


def test_waits_count_every_request_that_arrives_during_the_cold_start():
    m = MIN
    out = whatif.replay([(0, m), (30_000, 2 * m), (3 * m, 4 * m)], 10 * m, cold_start_ms=2 * m,
                        billing=Billing.of("second"), price=None)
    assert out.wait_ms == 2 * m + 90_000  # the first waits 2 min, the one at 0:30 waits 1:30
    assert out.cost is None and out.cold_starts == 1


@pytest.mark.parametrize("text, message", [
    ("5m,fast", "--timeouts entry must be a duration"), ("5m,,1h", "empty entry"),
    ("30m,1800s", "lists 30m twice"), ("never,never", "lists never twice"), ("-5m", "must be a duration"),
])
def test_bad_timeout_lists(text, message):
    with pytest.raises(Exception, match=message):
        whatif.parse_timeouts(text)


# -- the CLI -------------------------------------------------------------------------------

def write(tmp_path, lines: list[str], name: str = "t.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


GOOD = ['{"start": "2025-04-30T10:00:00+08:00", "end": "2025-04-30T10:05:00+08:00"}',
        '{"start": "2025-04-30T10:20:00Z", "end": "2025-04-30T10:21:00Z"}']


def one_error(capsys, argv) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    return lines[0]


@pytest.mark.parametrize("line, message", [
    ('{"start": "2025-04-30T10:00:00Z", "end": "2025-04-30T09:00:00Z"}', ":2: end 2025-04-30T09:00:00Z is before start"),
    ('{"start": "yesterday", "end": "2025-04-30T09:00:00Z"}', ":2: bad start timestamp 'yesterday'"),
    ('{"start": "2025-04-30T10:00:00Z"', ":2: not JSON"),
    ('[1, 2]', ':2: expected an object'),
])
def test_bad_trace_lines_name_the_line(tmp_path, capsys, line, message):
    path = write(tmp_path, [GOOD[0], line, GOOD[1]])
    err = one_error(capsys, ["report", "--trace", path, "--cold-start", "1m", "--price", "1.8"])
    assert message in err and path in err
    assert cli.main(["report", "--trace", path, "--cold-start", "1m", "--price", "1.8", "--skip-bad",
                     "--format", "json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["intervals"] == 2 and "skipped" in out.err and message in out.err


def test_empty_trace_and_other_bad_options(tmp_path, capsys):
    empty = write(tmp_path, [], "empty.jsonl")
    assert ":1: empty trace" in one_error(capsys, ["report", "--trace", empty, "--cold-start", "1m"])
    path = write(tmp_path, GOOD)
    base = ["report", "--trace", path, "--price", "1.8"]
    assert "must not be negative" in one_error(capsys, base + ["--cold-start=-5s"])
    assert "--timeouts lists 30m twice" in one_error(capsys, base + ["--cold-start", "1m", "--timeouts", "30m,30m"])
    assert "invalid choice: 'weekly'" in one_error(capsys, base + ["--granularity", "weekly"])
    assert "--minimum must not be negative" in one_error(capsys, base + ["--cold-start", "1m", "--minimum=-1m"])
    assert "no measured cold start" in one_error(capsys, base)
    assert "--timeouts needs --what-if" in one_error(capsys, ["report", "--timeouts", "5m"])
    missing = str(tmp_path / "nope.jsonl")
    assert "cannot read trace" in one_error(capsys, ["report", "--trace", missing, "--cold-start", "1m"])


def test_json_shape_and_the_current_and_cheapest_marks(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    argv = ["report", "--trace", path, "--cold-start", "1m", "--gpu", "T4", "--timeouts", "5m,1h,never"]
    assert cli.main(argv + ["--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"rows", "oracle"}
    assert set(data["rows"][0]) == {"timeout_s", "billed_hours", "cost", "cold_starts", "wait_s", "vs_oracle"}
    assert set(data["oracle"]) == {"billed_hours", "cost", "cold_starts"}
    assert [r["timeout_s"] for r in data["rows"]] == [300.0, 1800.0, 3600.0, None]  # 30m = the current one
    assert data["current_timeout_s"] == 1800.0
    # 10:00-10:05 and 10:20-10:21 (local +8 vs UTC: 8 hours apart): two periods whatever the timeout
    assert data["rows"][0]["billed_hours"] == round((1 + 5 + 5 + 1 + 1 + 5) / 60, 4)
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "current" in table and "cheapest" in table and "oracle" in table and "¥1.8/h" in table
    assert cli.main(argv + ["--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("timeout,timeout_s,billed_hours,cost")


def test_an_old_ledger_without_activity_says_so(capsys):
    with Ledger(default_path()) as led:
        sid = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4")
        led.close_session(sid, "user")
    assert cli.main(["report", "--what-if"]) == 0
    assert "no recorded activity for this period" in capsys.readouterr().out


def test_a_v1_ledger_file_says_there_is_no_recorded_activity(tmp_path, capsys):
    import sqlite3

    from qwentui.cost.ledger import _V1

    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_V1)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert cli.main(["report", "--what-if", "--ledger", str(path)]) == 0
    assert "no recorded activity for this period" in capsys.readouterr().out
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1  # a reader never migrates
