"""The idle watchdog state machine, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import pytest

from qwentui.config import IdleConfig
from qwentui.errors import UsageError
from qwentui.idle.watchdog import IdleState, IdleStatus, MetricsSample, Watchdog, clock_text

TIMEOUT, WARN = 1800.0, 120.0


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wd(clock) -> Watchdog:
    dog = Watchdog(TIMEOUT, WARN, clock=clock)
    dog.observe_metrics(sample())  # baseline; the engine just started
    return dog


def sample(running=0, queued=0, requests=0, prompt=0, gen=0) -> MetricsSample:
    return MetricsSample(running=running, queued=queued, requests_total=requests,
                         prompt_tokens_total=prompt, generation_tokens_total=gen)


def run_to_action(wd: Watchdog, clock: FakeClock) -> IdleStatus:
    clock.advance(TIMEOUT)
    return wd.tick()


# -- transitions -------------------------------------------------------------------------


def test_counts_from_start_then_warns_then_acts_once_then_done(wd, clock):
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_left == TIMEOUT and st.seconds_idle == 0
    clock.advance(750)
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_idle == 750
    assert st.describe() == "idle 12:30 — stop in 17:30"
    clock.advance(TIMEOUT - WARN - 750 - 1)
    assert wd.tick().state is IdleState.IDLE
    clock.advance(1)
    st = wd.tick()
    assert st.state is IdleState.WARNING and st.warning_started and st.reason_action == "idle"
    assert st.describe() == "idle stop in 2:00"
    clock.advance(0.5)
    st = wd.tick()
    assert st.state is IdleState.WARNING and not st.warning_started  # the bell rings once
    assert st.describe() == "idle stop in 2:00"  # rounds up: never 0:00 before acting
    clock.advance(WARN - 0.5)
    st = wd.tick()
    assert st.state is IdleState.ACTING and st.action_due and st.reason_action == "idle"
    assert st.describe() == "stopping engine (idle)"
    assert not wd.tick().action_due  # the action is due exactly once
    wd.action_done()
    st = wd.tick()
    assert st.state is IdleState.DONE and st.seconds_left is None
    assert st.describe() == "stopped (idle)"
    clock.advance(10 * TIMEOUT)
    assert wd.tick().state is IdleState.DONE


def test_warning_text_counts_down(clock):
    wd = Watchdog(TIMEOUT, 300, clock=clock)
    wd.observe_metrics(sample())
    clock.advance(TIMEOUT - 299)
    assert wd.tick().describe() == "idle stop in 4:59"


def test_poweroff_action_is_named_in_the_header(clock):
    wd = Watchdog(TIMEOUT, 300, action="poweroff", clock=clock)
    wd.observe_metrics(sample())
    assert wd.tick().describe() == "idle 0:00 — power off in 30:00"
    clock.advance(TIMEOUT - 299)
    assert wd.tick().describe() == "idle power off in 4:59"
    clock.advance(299)
    assert wd.tick().describe() == "powering off (idle)"


def test_acting_is_latched_even_if_activity_arrives(wd, clock):
    assert run_to_action(wd, clock).state is IdleState.ACTING
    wd.console_started()
    assert wd.tick().state is IdleState.ACTING


def test_rearm_after_restart_counts_afresh(wd, clock):
    run_to_action(wd, clock)
    wd.action_done()
    clock.advance(60)
    wd.rearm()
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_left == TIMEOUT


def test_stop_now_acts_at_next_tick(wd, clock):
    wd.stop_now()
    st = wd.tick()
    assert st.state is IdleState.ACTING and st.action_due


def test_hours_format():
    assert clock_text(3723) == "1:02:03"
    assert clock_text(59.2, up=True) == "1:00"
    assert clock_text(0) == "0:00"


# -- activity sources ----------------------------------------------------------------------


def test_console_chat_keeps_alive_and_timer_starts_at_finish(wd, clock):
    clock.advance(TIMEOUT - 10)
    wd.console_started()
    st = wd.tick()
    assert st.state is IdleState.ACTIVE and st.reason_alive == "console chat in flight"
    assert st.describe() == "console chat in flight"
    clock.advance(3 * TIMEOUT)  # a very long generation: still alive
    assert wd.tick().state is IdleState.ACTIVE
    wd.console_finished(prompt_tokens=10, generation_tokens=20)
    clock.advance(5)
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_idle == 5 and st.seconds_left == TIMEOUT - 5


def test_two_console_chats_need_both_to_finish(wd, clock):
    wd.console_started()
    wd.console_started()
    assert wd.tick().reason_alive == "2 console chats in flight"
    wd.console_finished()
    assert wd.tick().state is IdleState.ACTIVE
    wd.console_finished()
    assert wd.tick().state is IdleState.IDLE


def test_running_gauge_keeps_alive(wd, clock):
    clock.advance(TIMEOUT - 1)
    wd.observe_metrics(sample(running=1, queued=1))
    st = wd.tick()
    assert st.state is IdleState.ACTIVE and st.describe() == "busy: 2 API requests"
    clock.advance(3 * TIMEOUT)
    wd.observe_metrics(sample(running=1))
    assert wd.tick().describe() == "busy: 1 API request"
    wd.observe_metrics(sample(running=0, requests=2))
    clock.advance(10)
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_idle == 10 and st.last_activity == "API request"


def test_counter_increase_alone_restarts_the_timer(wd, clock):
    """An external client between two scrapes: gauges never saw it, the counters did."""
    clock.advance(TIMEOUT - 5)
    wd.observe_metrics(sample(requests=1, prompt=12, gen=40))
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_left == TIMEOUT


def test_token_counters_are_the_fallback_without_a_request_counter(clock):
    wd = Watchdog(TIMEOUT, WARN, clock=clock)
    wd.observe_metrics(MetricsSample(generation_tokens_total=100, prompt_tokens_total=10))
    clock.advance(600)
    wd.note_own_requests(1, prompt_tokens=5, generation_tokens=5)
    wd.observe_metrics(MetricsSample(generation_tokens_total=105, prompt_tokens_total=15))
    assert wd.tick().seconds_idle == 600  # own tokens only
    wd.observe_metrics(MetricsSample(generation_tokens_total=140, prompt_tokens_total=15))
    assert wd.tick().seconds_idle == 0


def test_batch_running_keeps_alive(wd, clock):
    wd.set_batch_running(True)
    clock.advance(2 * TIMEOUT)
    st = wd.tick()
    assert st.state is IdleState.ACTIVE and st.reason_alive == "batch running"
    wd.set_batch_running(False)
    clock.advance(1)
    assert wd.tick().seconds_idle == 1


def test_reasons_are_combined(wd, clock):
    wd.set_batch_running(True)
    wd.console_started()
    wd.observe_metrics(sample(running=3))  # 1 of them is the console's own
    assert wd.tick().reason_alive == "busy: 2 API requests, console chat in flight, batch running"


def test_accepts_telemetry_like_objects(wd, clock):
    class EngineMetrics:  # the telemetry snapshot's shape
        available, running, queued = True, 2, 0
        requests_total = prompt_tokens_total = generation_tokens_total = 0

    wd.observe_metrics(EngineMetrics())
    assert wd.tick().reason_alive == "busy: 2 API requests"


# -- qwentui's own traffic ----------------------------------------------------------------


def test_health_probes_never_count(wd, clock):
    """SGLang's /health generation shows in the running gauge, never in the counters."""
    for i in range(1, 40):
        clock.advance(60)
        wd.own_started()
        wd.observe_metrics(sample(running=1))
        wd.own_finished()
        wd.observe_metrics(sample(running=1))  # stale gauge
        if wd.tick().state is IdleState.ACTING:
            break
    assert i == TIMEOUT // 60 and wd.tick().reason_action == "idle"


def test_a_counter_moving_during_a_probe_is_an_external_request(wd, clock):
    """/health runs with log_metrics=False: a request counter that moves while a probe is in
    flight was somebody else's request (it used to be taken for the probe's)."""
    clock.advance(600)
    wd.own_started()
    wd.observe_metrics(sample(running=1))
    assert wd.tick().seconds_idle == 600
    wd.observe_metrics(sample(running=1, requests=1))
    assert wd.tick().seconds_idle == 0
    wd.own_finished()


def test_noted_own_requests_are_subtracted_but_extra_ones_count(wd, clock):
    clock.advance(600)
    wd.note_own_requests(2, prompt_tokens=4, generation_tokens=16)
    wd.observe_metrics(sample(requests=2))
    assert wd.tick().seconds_idle == 600
    wd.note_own_requests(1)
    wd.observe_metrics(sample(requests=4))  # one own + one external
    assert wd.tick().seconds_idle == 0


def test_own_credit_noted_before_the_scrape_sees_it(wd, clock):
    clock.advance(100)
    wd.console_started()
    wd.console_finished()
    clock.advance(100)
    wd.observe_metrics(sample(requests=1))  # the console's own chat, seen late
    assert wd.tick().seconds_idle == 100


def test_console_chat_counted_while_in_flight_does_not_mask_a_later_external(wd, clock):
    wd.console_started()
    wd.observe_metrics(sample(running=1, requests=1))
    wd.console_finished()
    clock.advance(40)
    wd.observe_metrics(sample(requests=1))
    assert wd.tick().seconds_idle == 40
    wd.observe_metrics(sample(requests=2))
    assert wd.tick().seconds_idle == 0


def test_external_request_right_after_start_is_seen(clock):
    wd = Watchdog(10, 3, clock=clock)
    wd.observe_metrics(sample())
    clock.advance(1)
    wd.observe_metrics(sample(running=1))  # an external stream; counters move only at its end
    clock.advance(60)
    assert wd.tick().reason_alive == "busy: 1 API request"


def test_stale_gauge_after_own_chat_is_allowed_until_it_refreshes(wd, clock):
    wd.console_started()
    wd.observe_metrics(sample(running=1))
    wd.console_finished()
    clock.advance(20)
    wd.observe_metrics(sample(running=1, requests=1))  # SGLang has not refreshed the gauge yet
    assert wd.tick().seconds_idle == 20
    wd.observe_metrics(sample(running=0, requests=1))  # refreshed
    wd.observe_metrics(sample(running=1, requests=1))  # now a real external request
    assert wd.tick().reason_alive == "busy: 1 API request"


def test_stale_gauge_allowance_expires(wd, clock):
    wd.console_started()
    wd.observe_metrics(sample(running=1))
    wd.console_finished()
    clock.advance(31)
    wd.observe_metrics(sample(running=1, requests=1))
    assert wd.tick().reason_alive == "busy: 1 API request"


def test_console_chat_that_never_reached_the_engine_leaves_no_credit(wd, clock):
    wd.console_started()
    wd.console_finished(counted=False)  # connection refused
    clock.advance(10)
    wd.observe_metrics(sample(requests=1))  # an external request
    assert wd.tick().seconds_idle == 0


def test_old_own_credit_expires(wd, clock):
    wd.note_own_requests(1)
    clock.advance(120)  # the scrape never saw it (e.g. metrics were down)
    wd.tick()
    wd.observe_metrics(sample(requests=1))
    assert wd.tick().seconds_idle == 0


def test_counter_reset_is_a_new_baseline(wd, clock):
    wd.observe_metrics(sample(requests=50))
    clock.advance(300)
    wd.observe_metrics(sample(requests=1))  # engine restarted behind our back
    assert wd.tick().seconds_idle == 300


# -- metrics unavailable -------------------------------------------------------------------


def test_metrics_unavailable_falls_back_to_console_and_says_so(clock):
    wd = Watchdog(TIMEOUT, WARN, clock=clock)
    wd.observe_metrics(None)
    st = wd.tick()
    assert not st.metrics_available
    assert st.describe() == "idle 0:00 — stop in 30:00 (no metrics)"
    wd.console_started()
    assert wd.tick().describe() == "console chat in flight (no metrics)"
    wd.console_finished()
    assert run_to_action(wd, clock).state is IdleState.ACTING


def test_metrics_going_away_while_busy_restarts_the_timer(wd, clock):
    wd.observe_metrics(sample(running=2))
    clock.advance(100)
    wd.observe_metrics(sample(running=2))
    wd.observe_metrics(type("M", (), {"available": False})())
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_idle == 0 and not st.metrics_available


# -- snooze and disable --------------------------------------------------------------------


def test_snooze_extends_by_the_timeout_and_repeats(wd, clock):
    clock.advance(TIMEOUT - 60)
    st = wd.tick()
    assert st.state is IdleState.WARNING and st.warning_started
    assert wd.snooze()
    st = wd.tick()
    assert st.state is IdleState.SNOOZED and st.seconds_left == TIMEOUT + 60
    assert st.describe() == "snoozed — stop in 31:00"
    assert wd.snooze()  # repeatable
    assert wd.tick().seconds_left == 2 * TIMEOUT + 60
    clock.advance(2 * TIMEOUT + 60 - WARN)
    st = wd.tick()
    assert st.state is IdleState.WARNING and st.warning_started  # the bell rings again
    clock.advance(WARN)
    assert wd.tick().state is IdleState.ACTING


def test_activity_after_snooze_counts_normally(wd, clock):
    wd.snooze()
    wd.console_started()
    clock.advance(5 * TIMEOUT)
    wd.console_finished()
    st = wd.tick()
    assert st.state is IdleState.IDLE and st.seconds_left == TIMEOUT


def test_disable_for_the_session(wd, clock):
    clock.advance(TIMEOUT - 30)
    wd.tick()
    wd.disable()
    clock.advance(10 * TIMEOUT)
    st = wd.tick()
    assert st.state is IdleState.DISABLED and st.describe() == "idle stop off" and not st.action_due
    assert not wd.snooze()
    wd.enable()
    assert wd.tick().seconds_left == TIMEOUT


def test_config_disabled_starts_disabled(clock):
    wd = Watchdog.from_config(IdleConfig(enabled=False), clock=clock)
    assert wd.tick().state is IdleState.DISABLED


def test_cannot_snooze_while_acting(wd, clock):
    run_to_action(wd, clock)
    assert not wd.snooze()


# -- budget ----------------------------------------------------------------------------------


def test_budget_warns_then_acts_even_when_busy(wd, clock):
    wd.console_started()
    wd.budget_reached("session")
    st = wd.tick()
    assert st.state is IdleState.WARNING and st.warning_started and st.reason_action == "budget"
    assert st.describe() == "budget reached — stop in 2:00"
    clock.advance(60)
    wd.budget_reached("session")  # the meter repeats itself; the deadline holds
    assert wd.tick().seconds_left == 60
    clock.advance(60)
    st = wd.tick()
    assert st.state is IdleState.ACTING and st.action_due and st.reason_action == "budget"
    wd.action_done()
    assert wd.tick().describe() == "stopped (budget)"


def test_budget_snooze_extends_and_disable_does_not_lift_the_cap(wd, clock):
    wd.budget_reached("month")
    assert wd.snooze()
    assert wd.tick().seconds_left == WARN + TIMEOUT
    wd.disable()
    clock.advance(WARN + TIMEOUT)
    st = wd.tick()
    assert st.state is IdleState.ACTING and st.reason_action == "budget"


def test_budget_acts_when_the_idle_timer_is_off_in_config(clock):
    from qwentui.config import IdleConfig

    wd = Watchdog.from_config(IdleConfig(enabled=False), clock=clock)
    wd.budget_reached("session")
    clock.advance(WARN)
    assert wd.tick().state is IdleState.ACTING


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout, warn, match", [
    (0, 0, "greater than zero"), (-5, 0, "greater than zero"), ("abc", 0, "greater than zero"),
    (float("nan"), 0, "greater than zero"), (True, 0, "greater than zero"),
    (60, 60, "shorter"), (60, 90, "shorter"), (60, -1, "shorter"), (60, "abc", "shorter"),
])
def test_watchdog_rejects_bad_timeouts(timeout, warn, match):
    with pytest.raises(UsageError, match=match):
        Watchdog(timeout, warn)


def test_watchdog_rejects_unknown_action():
    with pytest.raises(UsageError, match="stop-engine, poweroff"):
        Watchdog(60, 10, action="reboot")


# -- property: any interleaving of own probes and scrapes never counts as activity --------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["start", "server", "client", "scrape", "tick"]), max_size=40))
def test_own_probes_in_any_order_never_reset_the_timer(ops):
    clock = FakeClock()
    wd = Watchdog(TIMEOUT, WARN, clock=clock)
    wd.observe_metrics(sample())
    started = at_server = counter = 0  # probes sent / finished on the server, not yet on the client
    for op in ops:
        clock.advance(1)
        if op == "start":
            wd.own_started()
            started += 1
        elif op == "server" and started:  # the probe ran: gauges only (log_metrics=False)
            started, at_server = started - 1, at_server + 1
        elif op == "client" and at_server:
            wd.own_finished()
            at_server -= 1
        elif op == "scrape":
            wd.observe_metrics(sample(running=started + at_server, requests=counter))
        assert wd.tick().seconds_idle == clock.t - 1000.0


def test_reads_real_telemetry_metrics(clock):
    from qwentui.telemetry.metrics import parse

    wd = Watchdog(TIMEOUT, WARN, clock=clock)
    clock.advance(60)
    page = ('sglang:num_running_reqs{model_name="m",engine_type="unified"} 0.0\n'
            'sglang:num_queue_reqs{model_name="m",engine_type="unified"} 0.0\n')
    wd.observe_metrics(parse(page))  # counters absent before the first request: zero
    assert wd.tick().metrics_available and wd.tick().seconds_idle == 60
    page2 = page + 'sglang:num_requests_total{model_name="m",is_streaming="true"} 1.0\n'
    wd.observe_metrics(parse(page2))
    assert wd.tick().seconds_idle == 0
    wd.observe_metrics(parse("<html>nope</html>"))
    assert not wd.tick().metrics_available
