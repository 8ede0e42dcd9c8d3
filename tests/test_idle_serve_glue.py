"""The serve glue (`qwentui.runtime.headless`) in process: fake supervisor, scripted metrics, fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from qwentui.config import Config, CostConfig
from qwentui.cost.ledger import Ledger
from qwentui.errors import ConfigError
from qwentui.idle.watchdog import IdleState, MetricsSample
from qwentui.runtime.headless import ServeWatch


class FakeSupervisor:
    attached = False
    base_url = "http://127.0.0.1:1"
    plan = None

    def __init__(self) -> None:
        self.listeners: list = []
        self.stops: list[str] = []
        self.status = type("S", (), {"state": "ready", "kind": "sim", "started_at": None,
                                     "stop_reason": None})()

    def subscribe(self, callback):
        self.listeners.append(callback)
        callback(self.status)  # the session opens when the engine runs
        return lambda: None

    async def stop(self, reason: str = "user") -> None:
        self.stops.append(reason)
        self.status = type("S", (), {"state": "stopped", "kind": "sim", "started_at": None,
                                     "stop_reason": reason})()
        for callback in self.listeners:
            callback(self.status)


class FakeSession:
    def __init__(self, cfg: Config) -> None:
        self.cfg, self.sup = cfg, FakeSupervisor()
        self.lines: list[str] = []
        self.on_tick: list = []
        self.on_exit: list = []
        self.stop_reason: str | None = None
        self.exit_code = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(cfg: Config, metrics=None, **idle):
    session = FakeSession(cfg)
    clock = Clock()
    values = iter(metrics or [])

    async def scrape():
        return next(values, MetricsSample(requests_total=0))

    watch = ServeWatch(session, dataclasses.replace(cfg.idle, **idle), clock=clock, scrape=scrape,
                       ledger=Ledger())
    return session, watch, clock


async def run_ticks(session, watch, clock, n: int, step: float = 1.0) -> None:
    for _ in range(n):
        if session.stop_reason:
            break
        await watch.on_tick(session)
        clock.t += step


async def test_idle_stop_closes_the_ledger_row_with_idle():
    session, watch, clock = make(Config(), timeout=5.0, warn_before=2.0)
    await run_ticks(session, watch, clock, 20)
    assert session.sup.stops == ["idle"] and session.stop_reason == "idle"
    assert watch.watchdog.tick().state is IdleState.DONE
    assert session.lines == [
        "idle: stop the engine after 5s without activity (warning 2s before)",
        "idle: no activity for 0:03 — stopping the engine in 0:02 (Ctrl+C stops now)",
        "idle: no activity for 0:05: stopping the engine...",
        "idle: engine stopped (idle)",
    ]
    await watch.on_exit(session)
    with Ledger(read_only=True) as ledger:
        assert ledger.sessions()[-1].stop_reason == "idle"


async def test_activity_during_the_warning_cancels_it():
    busy = [MetricsSample(requests_total=0)] * 4 + [MetricsSample(running=1, requests_total=0)]
    session, watch, clock = make(Config(), busy, timeout=5.0, warn_before=2.0)
    await run_ticks(session, watch, clock, 5)
    assert session.lines[-1] == "idle: activity again (API request): stop cancelled"
    assert not session.sup.stops


async def test_budget_reached_warns_then_stops_with_reason_budget():
    cost = dataclasses.replace(CostConfig(), price_per_hour=3600.0, budget_session=0.001, billing="engine")
    cfg = dataclasses.replace(Config(), cost=cost)
    session, watch, clock = make(cfg, timeout=600.0, warn_before=3.0)
    await run_ticks(session, watch, clock, 10)
    assert session.sup.stops == ["budget"]
    assert "idle: budget reached — stopping the engine in 0:03 (Ctrl+C stops now)" in session.lines
    assert "session budget 0.001 CNY" in session.lines[0]
    await watch.on_exit(session)
    with Ledger(read_only=True) as ledger:
        assert ledger.sessions()[-1].stop_reason == "budget"


async def test_dry_run_poweroff_prints_and_exits_zero():
    session, watch, clock = make(Config(), timeout=2.0, warn_before=1.0, action="poweroff",
                                 poweroff_command=["sh", "-c", "exit 9"], dry_run=True)
    await run_ticks(session, watch, clock, 10)
    assert "dry run: would power off with: sh -c exit 9" in session.lines
    assert "(sh -c exit 9, dry run)" in session.lines[0]
    assert session.exit_code == 0 and watch.result.ok and not watch.result.ran


async def test_metrics_unavailable_is_said_once_and_recovery_too():
    class Down:
        available, error = False, "engine not reachable (connection refused)"

    seq = [Down(), Down(), MetricsSample(requests_total=0)]
    session, watch, clock = make(Config(), seq, timeout=60.0, warn_before=2.0)
    await run_ticks(session, watch, clock, 3)
    assert session.lines[1:] == [
        "idle: engine metrics unavailable (engine not reachable (connection refused)): "
        "API clients cannot keep the engine alive",
        "idle: engine metrics available again",
    ]


async def test_idle_disabled_in_config_says_so():
    session, watch, clock = make(Config(), enabled=False)
    await run_ticks(session, watch, clock, 3)
    assert session.lines == ["idle: watchdog off (idle.enabled = false)"]
    assert watch.watchdog.tick().state is IdleState.DISABLED


def _serve_config(tmp_path, *argv):
    from qwentui.cli import build_parser
    from qwentui.commands.flags import load_config

    file = tmp_path / "config.toml"
    file.write_text("[idle]\nenabled = false\n")
    return load_config(build_parser().parse_args(["--config", str(file), "serve", *argv]))


def test_idle_settings_from_flags(tmp_path):
    idle = _serve_config(tmp_path, "--idle-timeout", "3s", "--idle-action", "poweroff", "--dry-run").idle
    assert (idle.timeout, idle.warn_before, idle.action, idle.dry_run, idle.enabled) == (3.0, 1.0, "poweroff",
                                                                                         True, True)
    keep = _serve_config(tmp_path, "--idle-timeout", "1h").idle
    assert (keep.timeout, keep.warn_before, keep.action) == (3600.0, 120.0, "stop-engine")
    with pytest.raises(ConfigError, match="--idle-timeout must be greater than zero"):
        _serve_config(tmp_path, "--idle-timeout", "0s")