"""The guard: the one process per state dir that owns the engine and everything that must
outlive a console — supervisor, telemetry sampler, idle watchdog, cost meter and ledger
session, and the idle/budget action (stop engine → close ledger → power off).

    qwentui serve            a guard in the foreground (prints phases, snippet, idle lines)
    qwentui serve --detach   the same in the background; consoles start one this way

It is `ServeSession` (signals, start, snippet, bounded stop) + `Runtime` (its own loop:
sample → meter → watchdog → act) + the control API on a Unix socket (runtime/api.py).
The engine keeps PR_SET_PDEATHSIG on the guard: a SIGKILLed guard takes it along.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, TextIO

from qwentui import __version__
from qwentui.config import Config
from qwentui.cost.ledger import STOP_REASONS as LEDGER_REASONS
from qwentui.errors import QwentuiError
from qwentui.runtime.api import ApiServer, EventHub, bind_socket, build_app
from qwentui.runtime.place import GuardLock, GuardPlace, place
from qwentui.runtime.wire import encode

log = logging.getLogger(__name__)

LEASE_MAX_S = 3600.0
SNOOZE_MAX_S = 7 * 24 * 3600.0  # an activity lease (batch) lasts at most this long without renewal


class Guard:
    """One guard run; `await run()` returns the exit code."""

    def __init__(self, cfg: Config, idle_cfg: Any = None, *, preset: str | None = None,
                 out: TextIO | None = None, stay: bool = False, where: GuardPlace | None = None,
                 start: bool = True, supervisor: Any = None) -> None:
        from qwentui.engine import Supervisor
        from qwentui.runtime.core import Runtime
        from qwentui.runtime.headless import ServeWatch
        from qwentui.runtime.serve import ServeSession

        self.cfg = cfg
        self.idle_cfg = idle_cfg if idle_cfg is not None else cfg.idle
        self.where = where or place(cfg.engine.kind)
        self.hub = EventHub()
        self.lock = GuardLock(self.where)
        self.started_at = time.time()
        self._start = start
        self._consoles = 0
        self._leases: dict[str, float] = {}  # source -> monotonic expiry
        self._tasks: set[asyncio.Task] = set()
        sup = supervisor or Supervisor(cfg, preset=preset, on_log=self._on_log)
        self.session = ServeSession(cfg, out=out, supervisor=sup, stay=stay)
        self.runtime = Runtime(cfg, sup, idle_cfg=self.idle_cfg, on_snapshot=self._on_snapshot,
                               on_message=self._on_message, on_action_start=self._acting,
                               on_action_done=self._acted)
        self.narrator = ServeWatch(self.session, self.idle_cfg, runtime=self.runtime)
        sup.subscribe(self._on_engine)

    @property
    def sup(self) -> Any:
        return self.session.sup

    # -- life --------------------------------------------------------------------------

    async def run(self) -> int:
        self.lock.acquire()
        if self._start:
            try:
                self.sup.check()  # bad input (port in use, no SGLang) fails before the guard answers
            except BaseException:
                self.lock.release()
                raise
        try:
            sock = bind_socket(self.where.socket)
        except OSError as exc:
            self.lock.release()
            raise QwentuiError(f"cannot create the control socket {self.where.socket}: {exc.strerror or exc}")
        api = ApiServer(build_app(self, self.hub), sock)
        serving = asyncio.create_task(api.serve())
        ticking = asyncio.create_task(self.runtime.run())
        code = 1
        try:  # from here on every way out releases the lock and removes the socket
            self.session.say(f"qwentui guard {__version__}: pid {os.getpid()}, control socket {self.where.socket}")
            code = await self.session.run(start=self._start)
            await self.runtime.settle()  # a poweroff under way finishes before we go
        finally:
            await self._finish(api, serving, ticking)
        return code or self.session.exit_code

    async def _finish(self, api: ApiServer, serving: asyncio.Task, ticking: asyncio.Task) -> None:
        try:
            await self.runtime.close(self.session.stop_reason or "user")
            self.narrator.finished()
        finally:
            ticking.cancel()
            self.hub.close()
            api.stop()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(serving, 5.0)
            with contextlib.suppress(OSError):
                self.where.socket.unlink()
            self.lock.release()

    # -- feeds -------------------------------------------------------------------------

    def _on_log(self, line: str) -> None:
        self.hub.publish("log", line)

    def _on_engine(self, status: Any) -> None:
        self.hub.publish("engine", encode(status))

    def _on_message(self, text: str) -> None:
        self.session.say(text)
        self.hub.publish("notice", {"text": text, "severity": "warning"})

    def _on_snapshot(self, snap: Any) -> None:
        self._expire_leases()
        self.narrator.follow(snap)
        self.hub.publish("state", self.state(snap))

    def _acting(self, status: Any) -> None:
        self.narrator.acting(status)
        self.hub.publish("notice", {"text": f"idle: {status.reason_action}: acting", "severity": "warning"})

    def _acted(self, result: Any) -> None:
        self.narrator.acted(result)
        text = result.message + (f"\n{result.hint}" if result.hint else "")
        self.hub.publish("notice", {"text": text, "severity": "information" if result.ok else "error",
                                    "title": "Idle watchdog"})

    def console_attached(self, delta: int) -> None:
        self._consoles = max(0, self._consoles + delta)
        if self.idle_cfg.count_consoles:
            self.runtime.hold("console", self._consoles)

    def _expire_leases(self) -> None:
        now = time.monotonic()
        for source, until in list(self._leases.items()):
            if until <= now:
                del self._leases[source]
                self.runtime.hold(source, 0)

    # -- the API's view ----------------------------------------------------------------

    def state(self, snap: Any = None) -> dict[str, Any]:
        snap = snap if snap is not None else self.runtime.latest
        status = self.sup.status
        out: dict[str, Any] = {
            "version": __version__,
            "guard": {"pid": os.getpid(), "started_at": self.started_at,
                      "uptime_s": round(time.time() - self.started_at, 1), "socket": str(self.where.socket),
                      "consoles": self._consoles, "count_consoles": self.idle_cfg.count_consoles,
                      "stays": self.session.stay, "engine_log": str(self.sup.log_path or "")},
            "engine": {"state": status.state.value, "phase": status.phase, "pid": status.pid,
                       "url": status.base_url, "model": status.model, "preset": status.preset,
                       "kind": status.kind, "simulated": status.simulated, "stop_reason": status.stop_reason,
                       "error": status.error},
        }
        if snap is not None:
            out["idle"] = _idle_part(snap, self.idle_cfg)
            out["cost"] = _cost_part(snap.cost)
            out["gpu"] = _gpu_part(snap.telemetry)
            out["snapshot"] = encode(snap)
        return out

    def log_tail(self, lines: int) -> dict[str, Any]:
        return {"path": str(self.sup.log_path or ""), "lines": self.sup.log_lines()[-lines:]}

    def history(self) -> list[Any]:
        sampler = self.runtime.sampler
        return [encode(s) for s in getattr(sampler, "history", ())]

    def connect_info(self) -> dict[str, Any]:
        return {"base_url": self.sup.base_url, "model": self.sup.served_model, "api_key": self.sup.api_key}

    # -- commands ----------------------------------------------------------------------

    def command(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "_cmd_" + name.replace("/", "_").replace("-", "_"), None)
        if handler is None:
            return {"ok": False, "error": f"unknown command {name}"}
        return handler(body)

    def _cmd_idle_snooze(self, body: dict) -> dict:
        seconds = body.get("seconds")
        if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                    or not 0 < seconds <= SNOOZE_MAX_S):
            return {"ok": False, "error": f"seconds must be a number from 1 to {SNOOZE_MAX_S:g}"}
        ok = self.runtime.snooze(seconds)
        left = self.runtime.watchdog.tick().seconds_left
        return {"ok": ok, "seconds_left": left, "snooze_s": seconds or self.runtime.watchdog.timeout,
                **({} if ok else {"error": "nothing to snooze: the idle stop is off, not armed or already acting"})}

    def _cmd_idle_disable(self, body: dict) -> dict:
        self.runtime.disable()
        return {"ok": True}

    def _cmd_idle_enable(self, body: dict) -> dict:
        self.runtime.enable()
        return {"ok": True}

    def _cmd_idle_stop_now(self, body: dict) -> dict:
        self.runtime.stop_now(str(body.get("reason") or "idle"))
        return {"ok": True}

    def _cmd_activity(self, body: dict) -> dict:
        source = str(body.get("source") or "batch")
        try:
            seconds = float(body.get("seconds", 60))
        except (TypeError, ValueError):
            return {"ok": False, "error": "seconds must be a number"}
        if source not in ("batch",) or not 0 <= seconds <= LEASE_MAX_S:
            return {"ok": False, "error": f"bad activity lease: source {source!r}, seconds {seconds!r}"}
        if seconds == 0:
            self._leases.pop(source, None)
            self.runtime.hold(source, 0)
        else:
            self._leases[source] = time.monotonic() + seconds
            self.runtime.hold(source, 1)
        return {"ok": True}

    def _cmd_cache_hit(self, body: dict) -> dict:
        saved = body.get("saved_tokens", 0)
        if not isinstance(saved, int) or isinstance(saved, bool) or saved < 0:
            return {"ok": False, "error": "saved_tokens must be a whole number"}
        self.runtime.cache_hit(saved)
        return {"ok": True}

    def _cmd_engine_start(self, body: dict) -> dict:
        if self.sup.status.running:
            return {"ok": False, "error": f"the engine is already {self.sup.status.state.value}"}
        self._background(self._engine_op(self.runtime.start_engine()))
        return {"ok": True}

    def _cmd_engine_restart(self, body: dict) -> dict:
        if self.sup.status.state.value in ("starting", "stopping"):
            return {"ok": False, "error": f"the engine is {self.sup.status.state.value}"}
        self._background(self._engine_op(self.runtime.restart_engine()))
        return {"ok": True}

    def _cmd_engine_stop(self, body: dict) -> dict:
        reason = body.get("reason") or "user"
        if reason not in LEDGER_REASONS:
            return {"ok": False, "error": _bad_reason(reason)}
        if not self.sup.status.running:
            return {"ok": False, "error": "the engine is not running"}
        self._background(self._engine_op(self.sup.stop(reason)))
        return {"ok": True}

    def _cmd_guard_stop(self, body: dict) -> dict:
        self.session.request_stop(str(body.get("reason") or "user"))
        return {"ok": True, "pid": os.getpid()}

    def _cmd_guard_poweroff(self, body: dict) -> Any:
        """Stop the engine, close the ledger row, run the poweroff command once; answers when done."""
        reason, command = body.get("reason") or "batch-done", body.get("command", list(self.idle_cfg.poweroff_command))
        dry_run = body.get("dry_run", False)
        problem = (_bad_reason(reason) if reason not in LEDGER_REASONS
                   else "command must be a non-empty list of strings" if not _argv(command)
                   else "dry_run must be true or false" if not isinstance(dry_run, bool)
                   else "an engine stop or poweroff is already under way" if self.runtime.acting() else None)
        if problem is None:
            from qwentui.idle.actions import check_poweroff

            try:
                check_poweroff(command)
            except QwentuiError as exc:
                problem = exc.message
        if problem:
            return {"ok": False, "error": problem}
        return self._power_off(reason, command, dry_run or self.idle_cfg.dry_run)

    async def _power_off(self, reason: str, command: list[str], dry_run: bool) -> dict:
        self.session.hold_open(+1)
        try:
            result = await self.runtime.power_off(reason, command, dry_run=dry_run)
        finally:
            self.session.hold_open(-1)
        self.session.say(f"{reason}: {result.message}")
        self.hub.publish("notice", {"text": result.message, "severity": "information" if result.ok else "error",
                                    "title": "Power off"})
        return {"ok": result.ok, "message": result.message, "error": result.error, "hint": result.hint,
                "ran": result.ran, "dry_run": result.dry_run, "command": list(result.command),
                "engine_stopped": result.engine_stopped, "ledger_closed": result.ledger_closed}

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _engine_op(self, coro: Any) -> None:
        self.session.hold_open(+1)
        try:
            await coro
        except QwentuiError as exc:
            self.hub.publish("notice", {"text": exc.hint or exc.message, "title": f"Engine: {exc.message}"[:80],
                                        "severity": "error"})
        finally:
            self.session.hold_open(-1)


def _bad_reason(reason: Any) -> str:
    return f"reason must be one of {', '.join(LEDGER_REASONS)}, not {reason!r}"


def _argv(command: Any) -> bool:
    return isinstance(command, list) and bool(command) and all(isinstance(a, str) and a for a in command)


def _idle_part(snap: Any, idle_cfg: Any) -> dict[str, Any]:
    idle = snap.idle
    return {"state": idle.state.value, "text": snap.idle_text, "seconds_left": idle.seconds_left,
            "seconds_idle": idle.seconds_idle, "alive": idle.reason_alive, "last_activity": idle.last_activity,
            "action": idle.action, "timeout_s": idle_cfg.timeout, "warn_before_s": idle_cfg.warn_before,
            "watchdog": snap.watchdog}


def _cost_part(cost: Any) -> dict[str, Any]:
    def money(value: Any) -> str | None:
        return None if value is None else f"{value:.4f}"

    return {"currency": cost.currency, "rate_per_hour": money(cost.rate_per_hour), "basis": cost.basis,
            "gpu": cost.gpu_model, "session": money(cost.session_cost), "box": money(cost.box_since_boot_cost),
            "engine_session": money(cost.engine_session_cost), "today": money(cost.today_cost),
            "month": money(cost.month_cost), "budget_session": money(cost.budget_session),
            "budget_month": money(cost.budget_month), "ledger_error": cost.ledger_error}


def _gpu_part(telemetry: Any) -> dict[str, Any] | None:
    if telemetry is None:
        return None
    gpu = telemetry.gpu
    return {"status": gpu.status, "names": [g.name for g in gpu.gpus], "message": gpu.message}
