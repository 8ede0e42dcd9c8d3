"""The live meter with an injected clock: bases, midnight and month boundaries, idle, tokens."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from qwentui.config import Config
from qwentui.cost.ledger import Ledger
from qwentui.cost.meter import Meter
from qwentui.telemetry.metrics import EngineMetrics
from qwentui.telemetry.nvml import GpuSample, NvmlSnapshot

SH = ZoneInfo("Asia/Shanghai")  # UTC+8 all year: DST-free


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2025) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=SH).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t


def cfg(**cost) -> Config:
    return dataclasses.replace(Config(), cost=dataclasses.replace(Config().cost, **cost))


def meter(clock, *, billing="engine", boot=None, ledger=None, **cost) -> Meter:
    m = Meter(cfg(billing=billing, **cost), clock=clock, boot_time=boot if boot is not None else clock.t,
              ledger=ledger, tz=SH)
    m.set_gpu("Tesla T4")
    return m


def test_engine_session_costs_the_seeds_example():
    clock = Clock(at(4, 30, 10))
    m = meter(clock)
    m.engine_started()
    clock.set(at(4, 30, 10, 45))
    s = m.snapshot()
    assert (s.gpu_class, s.rate_per_hour, s.currency, s.symbol) == ("T4", Decimal("1.8"), "CNY", "¥")
    assert s.session_cost == s.engine_session_cost == Decimal("1.35")
    assert s.engine_running and s.engine_seconds == 45 * 60
    m.engine_stopped("user")
    clock.set(at(4, 30, 12))
    s = m.snapshot()
    assert not s.engine_running and s.engine_session_cost == Decimal("1.35")  # the last session
    assert s.today_cost == s.month_cost == Decimal("1.35")


def test_instance_basis_bills_since_boot_even_without_engine():
    clock = Clock(at(4, 30, 10))
    m = meter(clock, billing="instance", boot=at(4, 30, 8))
    s = m.snapshot()
    assert s.basis == "instance" and s.box_seconds == 2 * 3600
    assert s.box_since_boot_cost == s.session_cost == Decimal("3.6")
    assert s.engine_session_cost == 0 and not s.engine_running
    assert s.today_cost == Decimal("3.6")


def test_boot_time_is_psutil_by_default():
    import psutil

    m = Meter(cfg(), clock=time.time)
    assert m.boot_time() == psutil.boot_time()


def test_today_splits_at_local_midnight():
    clock = Clock(at(4, 30, 23, 30))
    m = meter(clock)
    m.engine_started()
    clock.set(at(5, 1, 0, 30))
    s = m.snapshot()
    assert s.session_cost == Decimal("1.8")  # an hour
    assert s.today_cost == Decimal("0.9")  # only since local midnight
    assert s.month_cost == Decimal("0.9")  # May only


def test_ledger_sessions_count_in_today_and_month(tmp_path):
    led = Ledger(tmp_path / "l.db")
    earlier = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(4, 30, 10))
    led.close_session(earlier, "user", at=at(4, 30, 10, 45))  # 1.35
    april = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(4, 2, 9))
    led.close_session(april, "idle", at=at(4, 2, 11))  # 3.6, same month, earlier day
    clock = Clock(at(4, 30, 23, 30))
    m = meter(clock, ledger=led)
    m.engine_started()
    clock.set(at(4, 30, 23, 45))
    s = m.snapshot()
    assert s.today_cost == Decimal("1.35") + Decimal("0.45")
    assert s.month_cost == Decimal("3.6") + Decimal("1.35") + Decimal("0.45")
    clock.set(at(5, 1, 0, 30))
    m.refresh()
    s = m.snapshot()
    assert (s.today_cost, s.month_cost, s.session_cost) == (Decimal("0.9"), Decimal("0.9"), Decimal("1.8"))


def test_a_ledger_session_across_the_month_boundary_is_split(tmp_path):
    led = Ledger(tmp_path / "l.db")
    sid = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(4, 30, 23))
    led.close_session(sid, "user", at=at(5, 1, 1))  # 2 h, ¥3.6
    clock = Clock(at(5, 1, 12))
    s = meter(clock, ledger=led).snapshot()
    assert s.month_cost == s.today_cost == Decimal("1.8")
    assert led.month_total(2025, 4, SH) == Decimal("1.8")
    clock.set(at(6, 1, 0, 0))  # a new month: nothing yet
    s = meter(clock, ledger=led).snapshot()
    assert s.month_cost == 0 and s.today_cost == 0


def test_year_boundary():
    clock = Clock(at(12, 31, 23, year=2025))
    m = meter(clock)
    m.engine_started()
    clock.set(at(1, 1, 2, year=2026))
    s = m.snapshot()
    assert (s.session_cost, s.today_cost, s.month_cost) == (Decimal("5.4"), Decimal("3.6"), Decimal("3.6"))


def test_instance_basis_does_not_double_count_sessions_of_this_boot(tmp_path):
    led = Ledger(tmp_path / "l.db")
    before_boot = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(4, 30, 1))
    led.close_session(before_boot, "user", at=at(4, 30, 2))  # 1.8, an earlier boot
    this_boot = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=at(4, 30, 9))
    led.close_session(this_boot, "user", at=at(4, 30, 9, 30))  # inside the box span
    clock = Clock(at(4, 30, 10))
    s = meter(clock, billing="instance", boot=at(4, 30, 8), ledger=led).snapshot()
    assert s.today_cost == Decimal("1.8") + Decimal("3.6")


def test_local_zone_from_tz_environment(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        clock = Clock(at(4, 30, 23, 30))
        m = Meter(cfg(billing="engine"), clock=clock, boot_time=0)
        m.set_gpu("Tesla T4")
        m.engine_started()
        clock.set(at(5, 1, 0, 30))
        assert m.snapshot().today_cost == Decimal("0.9")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_idle_cost_counts_billed_idle_time():
    clock = Clock(at(4, 30, 10))
    m = meter(clock)
    m.record_idle(True)  # engine not running, engine basis: nothing billed
    clock.set(at(4, 30, 10, 10))
    assert m.snapshot().idle_cost == 0
    m.engine_started()  # still idle: billing starts now
    clock.set(at(4, 30, 10, 40))
    s = m.snapshot()
    assert (s.idle_seconds, s.idle_cost) == (1800, Decimal("0.9"))
    m.record_idle(False)
    clock.set(at(4, 30, 11))
    m.record_idle(True)
    clock.set(at(4, 30, 11, 10))
    m.engine_stopped("idle")
    clock.set(at(4, 30, 12))
    s = m.snapshot()
    assert s.idle_seconds == 2400 and s.idle_cost == Decimal("1.2")


def test_idle_cost_on_instance_basis_runs_without_the_engine():
    clock = Clock(at(4, 30, 10))
    m = meter(clock, billing="instance", boot=at(4, 30, 9))
    m.record_idle(True)
    clock.set(at(4, 30, 11))
    assert m.snapshot().idle_cost == Decimal("1.8")


def test_tokens_per_1k_and_cache_savings():
    clock = Clock(at(4, 30, 10))
    m = meter(clock)
    m.engine_started()
    m.add_usage(500, 1500)
    m.add_usage(100, 1200)
    m.add_cache_savings(3, 900)
    clock.set(at(4, 30, 11))
    s = m.snapshot()
    assert (s.tokens_in, s.tokens_out, s.requests) == (600, 2700, 2)
    assert s.per_1k_tokens == Decimal("1.8") * 1000 / 2700
    assert (s.cache_hits, s.cache_saved_tokens) == (3, 900)
    assert s.cache_saved_cost == s.per_1k_tokens * 900 / 1000
    m.engine_stopped("user")
    m.engine_started()
    assert m.snapshot().tokens_out == 0  # per engine session


def test_engine_counters_count_increments_and_survive_restarts():
    clock = Clock(at(4, 30, 10))
    m = meter(clock)
    m.engine_started()
    m.set_counters(1000, 5000, 10)  # baseline: earlier traffic is not ours
    m.set_counters(1100, 5400, 12)
    m.add_usage(1, 1)  # ignored once counters are known (no double counting)
    m.set_counters(50, 200, 1)  # engine restarted: counters began again
    s = m.snapshot()
    assert (s.tokens_in, s.tokens_out, s.requests) == (150, 600, 3)


def test_observe_telemetry_snapshot():
    clock = Clock(at(4, 30, 10))
    m = Meter(cfg(billing="engine"), clock=clock, boot_time=0, tz=SH)
    gpu = NvmlSnapshot("ok", gpus=(GpuSample(0, "NVIDIA A10G", "A10G"),))
    m.observe(SimpleNamespace(gpu=gpu, engine=EngineMetrics(available=False)))
    assert (m.gpu_class, m.rate) == ("A10G", Decimal("3.0"))
    m.engine_started()
    for gen in (100.0, 400.0):
        m.observe(SimpleNamespace(gpu=gpu, engine=EngineMetrics(
            available=True, prompt_tokens_total=10.0, generation_tokens_total=gen, requests_total=1.0)))
    m.observe(SimpleNamespace(gpu=NvmlSnapshot("no-gpu"), engine=EngineMetrics(available=False)))
    assert m.snapshot().tokens_out == 300 and m.gpu_class == "A10G"


def test_unknown_gpu_is_a_price_unknown_state():
    clock = Clock(at(4, 30, 10))
    m = Meter(cfg(billing="engine"), clock=clock, boot_time=0, tz=SH)
    m.set_gpu("NVIDIA H100 80GB HBM3")
    m.engine_started()
    m.add_usage(10, 1000)
    clock.set(at(4, 30, 11))
    s = m.snapshot()
    assert not s.price_known and s.gpu_class == "H100"
    assert s.session_cost is None and s.per_1k_tokens is None and s.idle_cost is None
    assert s.projected_month is None and s.today_cost == 0


def test_price_override_wins():
    clock = Clock(at(4, 30, 10))
    m = Meter(cfg(billing="engine", price_per_hour=4.2), clock=clock, boot_time=0, tz=SH)
    assert m.snapshot().rate_per_hour == Decimal("4.2")  # even before NVML saw a GPU
    m.set_gpu("Tesla T4")
    assert m.rate == Decimal("4.2")


def test_projected_month_at_the_current_pattern():
    clock = Clock(at(5, 1, 0))
    m = meter(clock)
    m.engine_started()
    clock.set(at(5, 1, 12))
    s = m.snapshot()
    assert s.month_cost == Decimal("21.6")
    assert s.projected_month == Decimal("21.6") * 62  # 12 h of a 31-day month


def test_budgets():
    clock = Clock(at(4, 30, 10))
    m = meter(clock, budget_session=1.0, budget_month=100.0)
    m.engine_started()
    clock.set(at(4, 30, 10, 30))
    s = m.snapshot()
    assert (s.budget_session, s.budget_month, s.budget_exceeded) == (Decimal("1.0"), Decimal("100.0"), None)
    clock.set(at(4, 30, 10, 45))
    assert m.snapshot().budget_exceeded == "session"
    assert meter(Clock(at(4, 30, 10))).snapshot().budget_session is None


def test_meter_writes_the_ledger(tmp_path):
    led = Ledger(tmp_path / "l.db")
    clock = Clock(at(4, 30, 10))
    m = Meter(cfg(billing="engine"), clock=clock, boot_time=0, ledger=led, tz=SH)
    m.observe_engine(SimpleNamespace(state=SimpleNamespace(value="starting"), kind="sim", started_at=clock.t))
    sid = m.session_id
    assert sid is not None and led.session(sid).price_per_hour is None
    m.set_gpu("Tesla T4")  # NVML reports after the engine started
    m.add_usage(100, 300)
    clock.set(at(4, 30, 10, 30))
    assert m.heartbeat()
    row = led.session(sid)
    assert (row.gpu_class, row.price_per_hour, row.tokens_out, row.heartbeat) == ("T4", Decimal("1.8"), 300, clock.t)
    m.add_cache_savings(2, 150)
    clock.set(at(4, 30, 10, 45))
    m.observe_engine(SimpleNamespace(state="stopped", stop_reason="idle"))
    row = led.session(sid)
    assert (row.stop_reason, row.cost, row.engine_kind, row.cache_hits, row.cache_saved) == (
        "idle", Decimal("1.35"), "sim", 2, 150)
    assert m.session_id is None and not m.heartbeat()


def test_crash_status_closes_with_crash():
    clock = Clock(at(4, 30, 10))
    m = meter(clock)
    m.observe_engine(SimpleNamespace(state="ready", kind="sglang", started_at=None))
    assert m.engine_running
    m.observe_engine(SimpleNamespace(state="crashed", stop_reason=None))
    assert not m.engine_running


def test_ledger_trouble_never_stops_the_meter(tmp_path):
    Ledger(tmp_path / "l.db").close()
    ro = Ledger(tmp_path / "l.db", read_only=True)
    clock = Clock(at(4, 30, 10))
    m = meter(clock, ledger=ro)
    assert m.engine_started() is None
    s = m.snapshot()
    assert "read-only" in s.ledger_error and s.engine_running


def test_instance_idle_is_not_counted_twice_when_the_engine_starts():
    clock = Clock(at(4, 30, 10))
    m = meter(clock, billing="instance", boot=at(4, 30, 9))
    m.record_idle(True)
    clock.set(at(4, 30, 10, 30))
    m.engine_started(at=at(4, 30, 10, 20))  # reported a little late
    clock.set(at(4, 30, 11))
    assert m.snapshot().idle_seconds == 3600
