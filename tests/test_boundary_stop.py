"""idle.stop_at = "billing-boundary": hold an idle engine until just before the paid time ends."""

from __future__ import annotations

import dataclasses
import time

import pytest

from qwentui.config import Config, EngineConfig, from_mapping
from qwentui.cost.billing import Billing, BoundaryHold
from qwentui.cost.ledger import Ledger
from qwentui.errors import ConfigError
from qwentui.idle.watchdog import IdleState, Watchdog

from tests.test_runtime import BOOT, make


def cfg(granularity="hour", stop_at="billing-boundary", **idle) -> Config:
    base = Config()
    cost = dataclasses.replace(base.cost, billing="engine", heartbeat=60.0, granularity=granularity)
    idle_cfg = dataclasses.replace(base.idle, timeout=600.0, warn_before=60.0, stop_at=stop_at, **idle)
    return dataclasses.replace(base, cost=cost, idle=idle_cfg,
                               engine=dataclasses.replace(EngineConfig(), stop_grace=15.0))


async def run_until(rt, clock, seen, t: float, step: float = 5.0) -> None:
    while clock.t < t:
        await rt.step()
        clock.t += step


async def test_holds_until_45s_before_the_hour_and_a_request_in_the_window_costs_nothing():
    rt, sup, clock, seen = make(cfg())  # engine launched at wall BOOT (clock 0); armed at clock 1000
    sup.listeners[0](sup.status)
    await run_until(rt, clock, seen, 1700)
    idle = seen[-1].idle
    assert idle.state is IdleState.IDLE and not sup.stops  # the 10-minute timeout passed at 1600
    assert idle.paid_left == pytest.approx(3600 - 1695) and idle.seconds_left == pytest.approx(3555 - 1695)
    wall = BOOT + 1695
    expect = time.strftime("%H:%M", time.localtime(BOOT + 3600)), time.strftime("%H:%M:%S", time.localtime(BOOT + 3555))
    assert idle.describe(wall) == f"paid until {expect[0]} · stop at {expect[1]}"
    rt.console_started()  # someone asks something inside the paid hour
    await run_until(rt, clock, seen, 2000)
    rt.console_finished(3, 4)
    await run_until(rt, clock, seen, 3550)
    assert not sup.stops and seen[-1].idle.state is IdleState.WARNING
    assert seen[-1].idle.describe(BOOT + 3545).startswith("idle stop in 0:10 · paid until ")
    await run_until(rt, clock, seen, 3570)
    assert sup.stops == ["idle"]
    await rt.close()
    with Ledger(read_only=True) as ledger:
        (row,) = ledger.sessions()
    assert 3555 <= row.stop - BOOT <= 3561 and row.cost == Billing.of("hour").cost(row.price_per_hour, 0, 1)


async def test_activity_near_the_boundary_carries_the_stop_into_the_next_hour():
    rt, sup, clock, seen = make(cfg())
    sup.listeners[0](sup.status)
    await run_until(rt, clock, seen, 3300)
    rt.console_started()
    rt.console_finished(1, 1)  # idle deadline 3900: past this hour's stop, so hold to 7155
    await run_until(rt, clock, seen, 3700)
    assert not sup.stops and seen[-1].idle.paid_left == pytest.approx(7200 - 3695)
    await run_until(rt, clock, seen, 7150)
    assert not sup.stops
    await run_until(rt, clock, seen, 7170)
    assert sup.stops == ["idle"]
    await rt.close()


async def test_timeout_mode_and_per_second_billing_stop_at_the_timeout():
    for config in (cfg(stop_at="timeout"), cfg(granularity="second")):
        rt, sup, clock, seen = make(config)
        sup.listeners[0](sup.status)
        await run_until(rt, clock, seen, 1610)
        assert sup.stops == ["idle"] and all(s.idle.paid_left is None for s in seen)
        await rt.close()


def test_hold_maps_between_the_watchdogs_clock_and_wall_time():
    hold = BoundaryHold(Billing.of("minute"), 10.0, anchor=lambda at: 1000.0, clock=lambda: 50.0,
                        wall=lambda: 1050.0)
    # wall = mono + 1000; deadline 1055 wall is past 1060 - 10, so hold to the next minute: 1110
    assert hold(55.0) == (110.0, 120.0)
    assert hold(45.0) == (50.0, 60.0)
    dog = Watchdog(30.0, 5.0, clock=lambda: 0.0)
    dog.boundary = lambda deadline: (deadline + 100.0, deadline + 110.0)
    status = dog.tick()
    assert status.seconds_left == 130.0 and status.paid_left == 140.0


def test_stop_at_config():
    assert Config().idle.stop_at == "timeout" and Config().idle.boundary_margin == 0.0
    c = from_mapping({"idle": {"stop_at": "billing-boundary", "boundary_margin": "2m"}})
    assert (c.idle.stop_at, c.idle.boundary_margin) == ("billing-boundary", 120.0)
    with pytest.raises(ConfigError, match="idle.stop_at must be one of timeout, billing-boundary"):
        from_mapping({"idle": {"stop_at": "boundary"}})
    with pytest.raises(ConfigError, match="idle.boundary_margin must not be negative"):
        from_mapping({"idle": {"boundary_margin": "-1m"}})


@pytest.mark.slow
def test_serve_on_the_simulator_holds_to_just_before_the_minute(tmp_path):
    """A short "hour": per-minute billing, 3 s idle timeout, stop 50 s before each minute ends."""
    from tests.test_idle_serve import STOP_S, Serve, write_config
    from qwentui.cost.ledger import path_for

    config = write_config(tmp_path, '[cost]\nbilling = "engine"\nprice_per_hour = 1.8\ngranularity = "minute"\n'
                          '[idle]\ntimeout = "3s"\nwarn_before = "1s"\nstop_at = "billing-boundary"\n'
                          'boundary_margin = "50s"\n')
    serve = Serve(config)
    try:
        serve.wait_for("engine ready in", timeout=60)
        assert serve.wait_exit(timeout=60) == 0, serve.output()
    finally:
        serve.kill()
    with Ledger(path_for("sim"), read_only=True) as ledger:
        (row,) = ledger.sessions()
        (cold,) = ledger.cold_starts()
    up = row.stop - row.start
    # held past the timeout to :10, then a clean stop (SGLang's 5 s SIGTERM tick + scheduler exit)
    assert cold + 3 + 2 < 10 <= up <= 10 + STOP_S, (cold, up, serve.output())
    assert row.stop_reason == "idle" and row.cost == Billing.of("minute").cost(row.price_per_hour, 0, 1)
