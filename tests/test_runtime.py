"""`qwentui.runtime.core.Runtime` with a fake clock, a fake supervisor and scripted metrics (no sleeps)."""

from __future__ import annotations

import dataclasses
import sys
from decimal import Decimal
from types import SimpleNamespace

import pytest

from qwentui.cache import open_cache
from qwentui.chat.client import CacheHit, ContentDelta, Finished, ReasoningDelta, Usage
from qwentui.config import CacheConfig, Config, CostConfig, IdleConfig
from qwentui.cost import ledger as ledger_mod
from qwentui.cost.ledger import Ledger, LedgerError
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.idle.watchdog import IdleState, MetricsSample
from qwentui.runtime.core import Runtime
from qwentui.chat.cached import CachingClient

BOOT = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return BOOT + self.t


class FakeSupervisor:
    """Enough of `Supervisor`: states, listeners, start/stop, pids."""

    plan = None
    base_url = "http://127.0.0.1:1"

    def __init__(self, *, attached: bool = False, ready: bool = True) -> None:
        self.listeners: list = []
        self.stops: list[str] = []
        self.starts = 0
        state = EngineState.READY if ready else EngineState.STOPPED
        self.status = EngineStatus(state, "ready" if ready else "", "sim", "m", self.base_url,
                                   started_at=BOOT, attached=attached, simulated=True)

    def subscribe(self, callback):
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def pids(self) -> list[int]:
        return []

    def _set(self, **changes) -> None:
        self.status = dataclasses.replace(self.status, **changes)
        for callback in list(self.listeners):
            callback(self.status)

    async def start(self) -> None:
        self.starts += 1
        self._set(state=EngineState.STARTING, stop_reason=None)
        self._set(state=EngineState.READY, phase="ready")

    async def stop(self, reason: str = "user") -> None:
        if self.status.attached:
            return
        self.stops.append(reason)
        self._set(state=EngineState.STOPPING, stop_reason=reason)
        self._set(state=EngineState.STOPPED, phase="")


class FakeSampler:
    """Telemetry-shaped snapshots: one T4, scripted engine metrics."""

    nvml = None

    def __init__(self, metrics=None) -> None:
        self.metrics = list(metrics or [])
        self.history: list = []
        self.base_url: str | None = None
        self.closed = False

    async def sample_once(self):
        engine = self.metrics.pop(0) if self.metrics else MetricsSample(requests_total=0)
        gpu = SimpleNamespace(gpus=(SimpleNamespace(name="Tesla T4", gpu_class="T4"),))
        snap = SimpleNamespace(engine=engine, gpu=gpu, seq=len(self.history) + 1)
        self.history.append(snap)
        return snap

    async def aclose(self) -> None:
        self.closed = True


def cfg_with(**idle) -> Config:
    base = Config()
    cost = dataclasses.replace(base.cost, billing="engine", heartbeat=5.0)
    return dataclasses.replace(base, idle=dataclasses.replace(IdleConfig(), **idle), cost=cost)


def make(cfg: Config, *, sup=None, metrics=None, **kw):
    clock = Clock()
    sup = sup or FakeSupervisor()
    seen: list = []
    rt = Runtime(cfg, sup, sampler=FakeSampler(metrics), clock=clock, wall=clock.wall, boot_time=BOOT,
                 inline_actions=True, on_snapshot=seen.append, **kw)
    return rt, sup, clock, seen


async def ticks(rt, clock, n: int, step: float = 1.0) -> None:
    for _ in range(n):
        await rt.step()
        clock.t += step


def last_row():
    with Ledger(read_only=True) as ledger:
        return ledger.sessions()[-1]


async def test_idle_stop_warns_once_stops_and_closes_the_row_with_idle():
    rt, sup, clock, seen = make(cfg_with(timeout=5.0, warn_before=2.0))
    sup.listeners[0](sup.status)  # the engine runs: the meter opens a ledger session
    await ticks(rt, clock, 8)
    assert sup.stops == ["idle"]
    assert sum(s.idle.warning_started for s in seen) == 1
    assert [s.idle.state for s in seen if s.warning][0] is IdleState.WARNING
    assert seen[-1].idle.state is IdleState.DONE and seen[-1].idle_text == "stopped (idle)"
    assert rt.last_action.ok and rt.last_action.reason == "idle"
    assert last_row().stop_reason == "idle"
    assert seen[-1].cost.gpu_class == "T4" and seen[-1].cost.rate_per_hour == Decimal("1.8")
    await rt.close("user")
    assert sup.stops == ["idle"] and rt.sampler.closed  # already stopped: close does not stop again


async def test_console_chat_keeps_it_active_and_counting_starts_at_its_end():
    rt, sup, clock, seen = make(cfg_with(timeout=5.0, warn_before=2.0))
    rt.console_started()
    await ticks(rt, clock, 10)
    assert seen[-1].idle.state is IdleState.ACTIVE and "console chat" in seen[-1].idle_text
    rt.console_finished(10, 20)
    await ticks(rt, clock, 3)
    assert seen[-1].idle.state is IdleState.IDLE and not sup.stops
    await rt.close()


async def test_budget_reached_warns_then_stops_with_reason_budget():
    cost = dataclasses.replace(CostConfig(), price_per_hour=3600.0, budget_session=2.0, billing="engine",
                               heartbeat=5.0)
    cfg = dataclasses.replace(cfg_with(timeout=600.0, warn_before=3.0), cost=cost)
    rt, sup, clock, seen = make(cfg)
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 10)
    assert sup.stops == ["budget"]
    assert any(s.idle.reason_action == "budget" and s.warning for s in seen)
    assert last_row().stop_reason == "budget"
    await rt.close()


async def test_poweroff_runs_the_command_once_after_the_row_is_closed(tmp_path):
    marker = tmp_path / "marker"
    probe = ("import sys\nfrom qwentui.cost.ledger import Ledger\n"
             "with Ledger(read_only=True) as l: row = l.sessions()[-1]\n"
             f"open({str(marker)!r}, 'a').write(f'{{row.stop_reason}} {{row.open}}\\n')\n")
    cfg = cfg_with(timeout=3.0, warn_before=1.0, action="poweroff", poweroff_command=[sys.executable, "-c", probe])
    rt, sup, clock, seen = make(cfg)
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 8)
    assert sup.stops == ["idle"]
    assert marker.read_text() == "idle False\n"  # ran once, and the row was already closed
    assert rt.last_action.ran and rt.last_action.ledger_closed
    await rt.act(seen[-1].idle)  # a second call returns the first result: nothing runs again
    assert marker.read_text() == "idle False\n"
    await rt.close()


async def test_snooze_pushes_the_stop_out_by_the_timeout():
    rt, sup, clock, seen = make(cfg_with(timeout=5.0, warn_before=2.0))
    await ticks(rt, clock, 4)
    assert seen[-1].warning
    assert rt.snooze()
    await ticks(rt, clock, 4)
    assert seen[-1].idle.state is IdleState.SNOOZED and not sup.stops
    assert seen[-1].idle_text.startswith("snoozed — stop in")
    await ticks(rt, clock, 6)
    assert sup.stops == ["idle"]
    await rt.close()


async def test_disable_turns_the_idle_stop_off_for_the_session():
    rt, sup, clock, seen = make(cfg_with(timeout=5.0, warn_before=2.0))
    await ticks(rt, clock, 4)
    rt.disable()
    await ticks(rt, clock, 30)
    assert not sup.stops and seen[-1].idle_text == "idle stop off"
    await rt.close("signal")
    assert sup.stops == ["signal"]


async def test_stop_now_acts_at_the_next_tick():
    rt, sup, clock, seen = make(cfg_with(timeout=600.0, warn_before=60.0))
    await ticks(rt, clock, 1)
    rt.stop_now()
    await ticks(rt, clock, 1)
    assert sup.stops == ["idle"]
    await rt.close()


async def test_restart_after_an_idle_stop_rearms_and_opens_a_new_session():
    rt, sup, clock, seen = make(cfg_with(timeout=3.0, warn_before=1.0))
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 6)
    assert sup.stops == ["idle"] and seen[-1].idle.state is IdleState.DONE
    await rt.restart_engine()
    assert sup.starts == 1
    await ticks(rt, clock, 1)
    assert seen[-1].idle.state is IdleState.IDLE and seen[-1].action is not None
    await ticks(rt, clock, 6)
    assert sup.stops == ["idle", "idle"]  # a fresh ActionRunner: it acts again
    with Ledger(read_only=True) as ledger:
        assert [r.stop_reason for r in ledger.sessions()] == ["idle", "idle"]
    await rt.close()


async def test_close_stops_the_engine_and_closes_the_row_with_the_reason():
    rt, sup, clock, seen = make(cfg_with(timeout=600.0, warn_before=60.0))
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 2)
    await rt.close("signal")
    await rt.close("user")  # idempotent
    assert sup.stops == ["signal"] and last_row().stop_reason == "signal"


async def test_attached_never_stops_and_says_the_watchdog_is_off():
    cost = dataclasses.replace(CostConfig(), price_per_hour=3600.0, budget_session=0.5, billing="engine")
    cfg = dataclasses.replace(cfg_with(timeout=2.0, warn_before=1.0), cost=cost)
    rt, sup, clock, seen = make(cfg, sup=FakeSupervisor(attached=True))
    await ticks(rt, clock, 20)
    assert not sup.stops and rt.ledger is None
    assert seen[-1].watchdog == "off: attached server" and seen[-1].idle_text == "no guard: idle stop off (attached)"
    await rt.close("signal")
    assert not sup.stops
    assert not ledger_mod.default_path().exists()  # nothing recorded for a server we did not start


async def test_ledger_unavailable_runs_on_without_one(monkeypatch):
    def broken(*a, **kw):
        raise LedgerError("database is locked")

    monkeypatch.setattr(ledger_mod, "Ledger", broken)
    messages: list[str] = []
    rt, sup, clock, seen = make(cfg_with(timeout=3.0, warn_before=1.0), on_message=messages.append)
    assert rt.ledger is None and "database is locked" in rt.ledger_error
    assert messages == [rt.ledger_error]
    sup.listeners[0](sup.status)
    await ticks(rt, clock, 6)
    assert sup.stops == ["idle"] and "not recorded" in seen[-1].ledger_error
    await rt.close()


async def test_not_armed_while_the_engine_is_stopped():
    rt, sup, clock, seen = make(cfg_with(timeout=2.0, warn_before=1.0), sup=FakeSupervisor(ready=False))
    await ticks(rt, clock, 10)
    assert not sup.stops and not rt.armed and seen[-1].idle_text == ""
    await rt.start_engine()
    await ticks(rt, clock, 1)
    assert rt.armed and seen[-1].idle.state is IdleState.IDLE
    await rt.close()


class _Inner:
    model = "m"

    def __init__(self) -> None:
        self.calls = 0

    async def stream_chat(self, messages, *, thinking=True, max_tokens=None, **params):
        self.calls += 1
        for event in (ReasoningDelta("hm"), ContentDelta("hi"), Usage(3, 5, 1, 8), Finished("stop")):
            yield event


async def test_caching_client_answers_an_exact_repeat_from_the_cache():
    cache = await open_cache(dataclasses.replace(CacheConfig(), enabled=True))
    inner, hits = _Inner(), []
    client = CachingClient(inner, cache, on_hit=hits.append)
    messages = [{"role": "user", "content": "hello"}]
    first = [e async for e in client.stream_chat(messages, thinking=True, max_tokens=64)]
    assert inner.calls == 1 and not any(isinstance(e, CacheHit) for e in first)
    again = [e async for e in client.stream_chat(messages, thinking=True, max_tokens=64)]
    assert inner.calls == 1 and hits == [5]
    assert again == [CacheHit(5), *first]  # the hit is an event in the stream, then the same answer
    other = [e async for e in client.stream_chat(messages, thinking=False, max_tokens=64)]
    assert inner.calls == 2 and not any(isinstance(e, CacheHit) for e in other)  # another mode, another key
    await cache.aclose()


@pytest.mark.parametrize("reason", ["user", "signal"])
async def test_close_of_a_kept_engine_does_not_stop_it(reason):
    sup = FakeSupervisor()
    rt, sup, clock, seen = make(cfg_with(timeout=600.0, warn_before=60.0), sup=sup)
    sup.listeners[0](sup.status)
    sup.status = dataclasses.replace(sup.status, attached=True, stop_reason="detached")  # --keep-engine hand-over
    await rt.close(reason)
    assert not sup.stops and last_row().stop_reason == reason
