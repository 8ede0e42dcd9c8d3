"""Billing granularity and minimum: the pure model, config, meter, ledger rows and reports."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from qwentui import cli
from qwentui.config import Config, from_mapping
from qwentui.cost import report
from qwentui.cost.billing import EXACT, Billing
from qwentui.cost.ledger import _V1, Ledger, schema_version
from qwentui.cost.meter import Meter
from qwentui.errors import ConfigError, UsageError

SH = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(2025, 4, day, hour, minute, second, tzinfo=SH).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cfg(**cost) -> Config:
    return dataclasses.replace(Config(), cost=dataclasses.replace(Config().cost, billing="engine", **cost))


@pytest.mark.parametrize("granularity, minimum, seconds, billed", [
    ("second", 0, 0.2, 1), ("second", 0, 61.0, 61), ("second", 60, 5, 60), ("second", 60, 61.5, 62),
    ("minute", 0, 1, 60), ("minute", 0, 60, 60), ("minute", 0, 60.001, 120), ("minute", 600, 61, 600),
    ("hour", 0, 1, 3600), ("hour", 0, 3600, 3600), ("hour", 0, 3601, 7200), ("hour", 0, 0, 0),
])
def test_billed_length_rounds_up_with_a_minimum(granularity, minimum, seconds, billed):
    b = Billing.of(granularity, minimum)
    assert b.billed_seconds(1000.0, 1000.0 + seconds) == billed
    assert b.cost(Decimal("3.6"), 1000.0, 1000.0 + seconds) == Decimal("3.6") * billed / 3600


def test_paid_until_and_the_stop_before_a_boundary():
    hour = Billing.of("hour")
    start = at(1, 10, 0, 30)
    assert hour.paid_until(start, at(1, 10, 5)) == at(1, 11, 0, 30)
    assert hour.paid_until(start, at(1, 11, 0, 30)) == at(1, 11, 0, 30)
    assert hour.paid_until(start, at(1, 11, 0, 31)) == at(1, 12, 0, 30)
    # 45 s margin: from 10:30 stop at 10:59:45; from 10:59:50 that is too late, so the next hour's
    assert hour.stop_before_boundary(start, at(1, 10, 30), 45) == (at(1, 10, 59, 45), at(1, 11, 0, 30))
    assert hour.stop_before_boundary(start, at(1, 10, 59, 50), 45) == (at(1, 11, 59, 45), at(1, 12, 0, 30))


def test_bad_billing_values_are_refused():
    with pytest.raises(UsageError, match="granularity must be one of second, minute, hour"):
        Billing.of("week")
    with pytest.raises(UsageError, match="must not be negative"):
        Billing.of("hour", -1)


@pytest.mark.parametrize("table, message", [
    ({"granularity": "week"}, "cost.granularity must be one of second, minute, hour, got 'week'"),
    ({"minimum": "-1m"}, "cost.minimum must not be negative, got '-1m'"),
    ({"minimum": -60}, "cost.minimum must not be negative, got -60"),
    ({"minimum": "soon"}, "cost.minimum must be a duration like"),
])
def test_config_validation(table, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_mapping({"cost": table})


def test_config_defaults_keep_todays_billing_and_round_trip():
    c = Config().cost
    assert (c.granularity, c.minimum) == ("second", 0.0)
    assert from_mapping({"cost": {"granularity": "hour", "minimum": "1m"}}).cost.minimum == 60.0
    from qwentui.config import default_file_text
    from qwentui.config import tomllib

    text = default_file_text()
    assert 'granularity = "second"' in text and 'minimum = "0s"' in text
    assert from_mapping(tomllib.loads(text)) == Config()


def test_bad_granularity_from_the_command_line_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[cost]\ngranularity = "fortnight"\n')
    assert cli.main(["--config", str(path), "report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cost.granularity must be one of second, minute, hour" in err[0]


def test_meter_bills_a_started_hour_and_the_ledger_row_agrees(tmp_path):
    clock = Clock(at(30, 10))
    with Ledger(tmp_path / "l.sqlite3") as led:
        m = Meter(cfg(granularity="hour"), clock=clock, ledger=led, tz=SH, boot_time=clock.t)
        m.set_gpu("Tesla T4")
        m.engine_started()
        clock.t = at(30, 10, 5)
        s = m.snapshot()
        assert s.engine_session_cost == Decimal("1.8")  # the started hour is committed
        assert s.today_cost == s.month_cost == Decimal("1.8")
        assert m.paid_until() == (at(30, 10), at(30, 11))
        clock.t = at(30, 11, 0, 1)
        assert m.snapshot().engine_session_cost == Decimal("3.6")
        row = m.engine_stopped("idle")
        assert row.cost == Decimal("3.6") and row.billing == Billing.of("hour")
        assert row.billed_end == at(30, 12)
        clock.t = at(30, 13)
        assert m.snapshot().today_cost == Decimal("3.6")


def test_minimum_applies_to_each_session(tmp_path):
    clock = Clock(at(30, 10))
    with Ledger(tmp_path / "l.sqlite3") as led:
        m = Meter(cfg(minimum=600.0), clock=clock, ledger=led, tz=SH, boot_time=clock.t)
        m.set_gpu("Tesla T4")
        for start in (at(30, 10), at(30, 11)):
            clock.t = start
            m.engine_started()
            clock.t = start + 30
            m.engine_stopped("user")
        rows = led.sessions()
    assert [r.cost for r in rows] == [Decimal("0.3"), Decimal("0.3")]  # 10 min each at ¥1.8/h


def test_report_uses_each_rows_billing_and_old_rows_stay_exact(tmp_path):
    path = tmp_path / "l.sqlite3"
    with Ledger(path) as led:
        a = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(30, 23, 50),
                             billing=Billing.of("hour"))
        led.close_session(a, "user", at=at(30, 23, 51))
        b = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(29, 9), billing=EXACT)
        led.close_session(b, "user", at=at(29, 9, 0, 30))
        rows = led.sessions()
    rep = report.build(rows, at(1), at(30) + 2 * 86400, cfg=Config(), title="t", now=at(30, 23, 59), tz=SH)
    assert rep.total.cost == Decimal("1.8") + Decimal("0.015")
    days = {d.key: d.cost for d in rep.days}
    # the started hour from 23:50 runs past midnight: the rounding counts on the day it is paid for
    assert days["2025-04-30"] == Decimal("0.3") and days["2025-05-01"] == Decimal("1.5")


def test_a_v1_ledger_migrates_and_keeps_its_exact_costs(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_V1)
    conn.execute("INSERT INTO sessions (start_utc, stop_utc, heartbeat_utc, price_per_hour, cost)"
                 " VALUES ('2025-04-30T02:00:00.000Z', '2025-04-30T02:00:00.500Z',"
                 " '2025-04-30T02:00:00.500Z', '3.6', '0.0005')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Ledger(path, read_only=True) as ro:  # a reader never migrates: still readable
        (row,) = ro.sessions()
        assert row.billing == EXACT and row.cost_between(0, 2e9) == Decimal("0.0005")
        assert ro.activity() == [] and ro.cold_starts() == []
    with Ledger(path) as led:
        (row,) = led.sessions()
        assert row.billing == EXACT and row.cost == Decimal("0.0005")
        led.add_activity(at(30, 10), at(30, 10, 1), "console")
        assert led.activity() == [(at(30, 10), at(30, 10, 1))]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == schema_version()

