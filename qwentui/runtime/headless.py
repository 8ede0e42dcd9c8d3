"""The idle watchdog and the cost ledger inside headless `qwentui serve`.

Plugs into `ServeSession` through its hooks (`on_tick`, `on_exit`, `request_stop`). The
feeding and acting is `qwentui.runtime.core.Runtime`, the same as in the console: each tick
scrapes `/metrics`, feeds the watchdog and the cost meter (ledger row, heartbeat, budget),
and when the watchdog says so stops the engine with reason `idle`/`budget`, closes the
ledger row and then, for `poweroff`, runs the command. This module only prints: changes
(warning, activity again, metrics lost), never a line per tick.
"""

from __future__ import annotations

import time
from typing import Any, Callable

STOP_NOTE = "Ctrl+C stops now"


def install(session: Any) -> "ServeWatch | None":
    """Watch an engine that serve owns; an attached server is someone else's to stop."""
    if session.sup.attached:
        return None
    watch = ServeWatch(session, session.cfg.idle)
    session.on_tick.append(watch.on_tick)
    session.on_exit.append(watch.on_exit)
    return watch


class ServeWatch:
    """Serve's printing around the shared `Runtime` (which feeds, decides and acts)."""

    def __init__(self, session: Any, idle_cfg: Any, *, clock: Callable[[], float] = time.monotonic,
                 scrape: Callable[[], Any] | None = None, ledger: Any = "default", runtime: Any = None) -> None:
        from qwentui.runtime.core import Runtime

        self.session, self.idle = session, idle_cfg
        self._scrape_fn = scrape
        self._http: Any = None
        # The guard passes its own Runtime (full telemetry, its own loop) and calls follow().
        self.runtime = runtime or Runtime(
            session.cfg, session.sup, idle_cfg=idle_cfg, scrape=self._scrape, ledger=ledger, clock=clock,
            on_message=session.say, inline_actions=True, on_action_start=self.acting, on_action_done=self.acted)
        self._announced = False
        self._last: Any = None
        self._metrics_error: str | None = None
        self._ledger_said: str | None = None
        self.result: Any = None  # the ActionResult once the watchdog acted

    @property
    def watchdog(self) -> Any:
        return self.runtime.watchdog

    @property
    def meter(self) -> Any:
        return self.runtime.meter

    @property
    def ledger(self) -> Any:
        return self.runtime.ledger

    # -- hooks -------------------------------------------------------------------------------

    async def on_tick(self, session: Any) -> None:
        if not self._announced:
            self._announced = True
            session.say(self._plan_line())
        snap = await self.runtime.step()
        self._report(snap.idle, self.runtime.metrics)
        self._report_ledger(snap.cost.ledger_error)

    def follow(self, snap: Any) -> None:
        """Print what one snapshot changed (the guard's runtime runs its own loop)."""
        self._report_ledger(snap.cost.ledger_error)
        if snap.engine.state.value != "ready" or not self.runtime.armed:
            return
        if not self._announced:
            self._announced = True
            self.session.say(self._plan_line())
        self._report(snap.idle, self.runtime.metrics)

    def finished(self) -> None:
        """The guard's runtime closed its ledger: say once if that write failed."""
        self._report_ledger(self.meter.ledger_error)

    async def on_exit(self, session: Any) -> None:
        if self._http is not None:
            await self._http.aclose()
        self.runtime.finish_ledger(session.stop_reason or "user")
        self._report_ledger(self.meter.ledger_error)

    def _report_ledger(self, error: str | None) -> None:
        """A failed ledger write (full disk, ...) is said once, not every heartbeat."""
        if error and error != self._ledger_said:
            self.session.say(f"warning: cost ledger write failed: {error}; this session may be "
                             "recorded incompletely")
        self._ledger_said = error

    # -- pieces ------------------------------------------------------------------------------

    def _plan_line(self) -> str:
        from qwentui.config import format_duration

        i = self.idle
        budget = self._budget_text()
        if not i.enabled:
            return "idle: watchdog off (idle.enabled = false)" + (f"; {budget}" if budget else "")
        what = "stop the engine" if i.action == "stop-engine" else \
            f"stop the engine and power off ({' '.join(i.poweroff_command)}{', dry run' if i.dry_run else ''})"
        return (f"idle: {what} after {format_duration(i.timeout)} without activity "
                f"(warning {format_duration(i.warn_before)} before)" + (f"; {budget}" if budget else ""))

    def _budget_text(self) -> str:
        c = self.session.cfg.cost
        parts = [f"{name} budget {value:g} {c.currency}" for name, value in
                 (("session", c.budget_session), ("month", c.budget_month)) if value > 0]
        return ", ".join(parts)

    async def _scrape(self) -> Any:
        if self._scrape_fn is not None:
            return await self._scrape_fn()
        import httpx

        from qwentui.telemetry.metrics import scrape

        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False)
        return await scrape(self._http, self.session.sup.base_url)

    def acting(self, status: Any) -> None:
        from qwentui.idle.watchdog import clock_text

        reason = status.reason_action
        if not getattr(self.session, "stay", False) or self.idle.action == "poweroff":
            self.session.request_stop(reason)  # a guard that stays keeps answering after a stop-engine
        why = f"no activity for {clock_text(status.seconds_idle)}" if reason == "idle" else "budget reached"
        then = " and powering off" if self.idle.action == "poweroff" else ""
        self.session.say(f"idle: {why}: stopping the engine{then}...")

    def acted(self, result: Any) -> None:
        self.result = result
        self.session.say(f"idle: {result.message}")
        if result.hint:
            self.session.say(f"hint: {result.hint}")
        if not result.ok:
            self.session.exit_code = max(getattr(self.session, "exit_code", 0), 1)

    def _report(self, status: Any, metrics: Any) -> None:
        from qwentui.idle.watchdog import IdleState, clock_text

        say, last = self.session.say, self._last
        self._last = status
        error = None if status.metrics_available else (getattr(metrics, "error", "") or "no response")
        if error and self._metrics_error is None:
            say(f"idle: engine metrics unavailable ({error}): API clients cannot keep the engine alive")
        elif not error and self._metrics_error is not None:
            say("idle: engine metrics available again")
        self._metrics_error = error
        if status.warning_started:
            verb = "powering off" if self.idle.action == "poweroff" else "stopping the engine"
            why = "budget reached" if status.reason_action == "budget" else \
                f"no activity for {clock_text(status.seconds_idle)}"
            say(f"idle: {why} — {verb} in {clock_text(status.seconds_left or 0, up=True)} ({STOP_NOTE})")
        elif last is not None and last.state is IdleState.WARNING and status.state in (
                IdleState.ACTIVE, IdleState.IDLE):
            say(f"idle: activity again ({status.last_activity}): stop cancelled")
