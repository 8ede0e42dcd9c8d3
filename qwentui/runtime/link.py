"""The console's side of a guard: the engine and the runtime as the guard reports them.

`GuardLink` follows `/events` and offers the two faces the console already knows:
`link.engine` (an `EngineControl`: status, URL, key, log, start/stop) and `link` itself
(a `RuntimeView`: snapshots, snooze, disable, restart). Nothing here watches, meters or
writes the ledger: every decision is the guard's, every control a POST. Chat traffic
goes straight to the engine and the guard counts it from the engine's counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from qwentui.engine.status import EngineState, EngineStatus
from qwentui.errors import QwentuiError
from qwentui.runtime.client import AsyncGuardClient
from qwentui.runtime.core import GUARD_GONE
from qwentui.runtime.wire import decode, decode_snapshot

log = logging.getLogger(__name__)

LOG_KEEP = 5000


class EngineControl(Protocol):
    """What the console needs of an engine: the local `Supervisor` (attach mode) and the
    guard's engine (`GuardEngine`) both fit."""

    @property
    def status(self) -> EngineStatus: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def served_model(self) -> str: ...
    @property
    def attached(self) -> bool: ...
    @property
    def log_path(self) -> Path | None: ...
    def log_lines(self) -> list[str]: ...
    async def start(self) -> None: ...
    async def stop(self, reason: str = "user") -> None: ...


class _Timeout:
    """`runtime.watchdog.timeout` for the console's "snoozed for 30m" line."""

    def __init__(self, seconds: float) -> None:
        self.timeout = seconds


class _History:
    def __init__(self) -> None:
        self.history: list[Any] = []


class GuardEngine:
    """The guard's engine, seen from the console."""

    def __init__(self, link: "GuardLink", status: EngineStatus, connect: dict[str, Any], log_path: str) -> None:
        self._link = link
        self._status = status
        self._connect = connect
        self._log_path = Path(log_path) if log_path else None
        self._lines: deque[str] = deque(maxlen=LOG_KEEP)
        self._listeners: list[Callable[[EngineStatus], Any]] = []

    def subscribe(self, callback: Callable[[EngineStatus], Any]) -> Callable[[], None]:
        """Call `callback(status)` on every change the guard reports; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _set(self, status: EngineStatus) -> None:
        changed = status != self._status
        self._status = status
        if changed:
            for listener in list(self._listeners):
                listener(status)

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def base_url(self) -> str:
        return self._connect.get("base_url") or self._status.base_url

    @property
    def api_key(self) -> str:
        return self._connect.get("api_key") or ""

    @property
    def served_model(self) -> str:
        return self._connect.get("model") or self._status.model

    @property
    def attached(self) -> bool:
        return False  # the guard owns it; the console may ask it to stop

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_lines(self) -> list[str]:
        return list(self._lines)

    async def start(self) -> None:
        await self._link.start_engine()

    async def stop(self, reason: str = "user") -> None:
        await self._link.command("engine/stop", allow=("not running",))


class GuardLink:
    """Follows one guard; `run()` until the guard goes away (then `on_gone`) or `close()`."""

    attached = False
    cache: Any = None  # the console's prompt cache (a chat feature; the guard has none)

    def __init__(self, client: AsyncGuardClient, state: dict[str, Any], connect: dict[str, Any], *,
                 on_gone: Callable[[str], Any] | None = None) -> None:
        self.client = client
        self.on_snapshot: Callable[[Any], Any] | None = None
        self.on_message: Callable[[str], Any] | None = None
        self.on_action_done: Callable[[Any], Any] | None = None
        self.on_gone = on_gone
        self.latest: Any = None
        self.ledger_error: str | None = None
        self.sampler = _History()
        self.guard_pid = state["guard"]["pid"]
        self.watchdog = _Timeout(state.get("idle", {}).get("timeout_s") or 0.0)
        status = _status_of(state)
        self.engine = GuardEngine(self, status, connect, state["guard"].get("engine_log", ""))
        self._take_state(state)
        self._closed = False

    @classmethod
    async def open(cls, client: AsyncGuardClient, **kwargs: Any) -> "GuardLink":
        state = await client.state()
        link = cls(client, state, await client.connect_info(), **kwargs)
        try:
            link.sampler.history = [decode_telemetry(s) for s in await client.history()]
            link.engine._lines.extend((await client.log_tail(LOG_KEEP)).get("lines", []))
        except QwentuiError:
            pass
        return link

    # -- the stream ----------------------------------------------------------------------

    async def run(self) -> None:
        why = "the guard ended the connection"
        try:
            async for kind, data in self.client.events():
                if kind == "state":
                    self._take_state(data, publish=True)
                elif kind == "engine":
                    self._take_engine(decode(EngineStatus, data))
                elif kind == "log":
                    self.engine._lines.append(data)
                elif kind == "notice":
                    self._say(data.get("text", ""))
                elif kind == "bye":
                    why = "the guard stopped"
                    break
        except QwentuiError as exc:
            why = exc.message
        if not self._closed:
            self.gone(why)

    def gone(self, why: str) -> None:
        """The guard went away: the engine is lost to us, nothing watches it from here."""
        if self.latest is not None:
            self.latest = dataclasses.replace(self.latest, watchdog=GUARD_GONE)
        self._take_engine(dataclasses.replace(self.engine.status, state=EngineState.STOPPED, pid=None,
                                              phase="", error="the guard is gone", stop_reason="guard gone"))
        if self.on_gone is not None:
            self.on_gone(why)

    def _take_state(self, state: dict[str, Any], publish: bool = False) -> None:
        self.watchdog.timeout = state.get("idle", {}).get("timeout_s") or self.watchdog.timeout
        data = state.get("snapshot")
        if data is None:
            return
        snap = decode_snapshot(data)
        if self.latest is not None and snap.seq <= self.latest.seq:
            return  # stale (or repeated) snapshot
        self.latest = snap
        self.ledger_error = snap.ledger_error
        self.engine._set(snap.engine)
        if snap.telemetry is not None:
            history = self.sampler.history
            if not history or history[-1].seq != snap.telemetry.seq:
                history.append(snap.telemetry)
                del history[:-600]
        if publish and self.on_snapshot is not None:
            self.on_snapshot(snap)

    def _take_engine(self, status: EngineStatus) -> None:
        self.engine._set(status)
        if self.latest is not None:
            self.latest = dataclasses.replace(self.latest, engine=status)
            if self.on_snapshot is not None:
                self.on_snapshot(self.latest)

    def _say(self, text: str) -> None:
        if text and self.on_message is not None:
            self.on_message(text)

    async def close(self, reason: str = "user") -> None:
        self._closed = True
        await self.client.aclose()

    # -- controls ------------------------------------------------------------------------

    async def command(self, name: str, body: dict | None = None, *, allow: tuple[str, ...] = ()) -> dict:
        result = await self.client.command(name, body)
        error = result.get("error") or ""
        if not result.get("ok", True) and not any(a in error for a in allow):
            raise QwentuiError(error or f"the guard refused {name}")
        return result

    def _fire(self, name: str, body: dict | None = None) -> None:
        async def send() -> None:
            try:
                await self.command(name, body)
            except QwentuiError as exc:
                self._say(exc.message)

        asyncio.ensure_future(send())

    async def start_engine(self) -> None:
        await self.command("engine/start", allow=("already",))

    async def restart_engine(self) -> None:
        await self.command("engine/restart")

    def snooze(self, seconds: float | None = None) -> bool:
        self._fire("idle/snooze", {} if seconds is None else {"seconds": seconds})
        idle = self.latest.idle if self.latest is not None else None
        return idle is not None and idle.state.value not in ("acting", "done", "disabled")

    def disable(self) -> None:
        self._fire("idle/disable")

    def stop_now(self, reason: str = "idle") -> None:
        self._fire("idle/stop-now", {"reason": reason})

    def console_started(self) -> None:
        """The guard sees console chats in the engine's counters like any client's."""

    def console_finished(self, prompt_tokens: int = 0, generation_tokens: int = 0, *, counted: bool = True) -> None:
        """See `console_started`."""

    def cache_hit(self, saved_tokens: int) -> None:
        self._fire("cache/hit", {"saved_tokens": int(saved_tokens)})

    async def stop_guard(self) -> None:
        """Stop the engine and the guard (quit: "stop engine and quit")."""
        await self.client.command("guard/stop")


def _status_of(state: dict[str, Any]) -> EngineStatus:
    snap = state.get("snapshot")
    if snap is not None:
        return decode(EngineStatus, snap["engine"])
    e = state["engine"]
    return EngineStatus(EngineState(e["state"]), e["phase"], e["kind"], e["model"], e["url"], pid=e["pid"],
                        simulated=e["simulated"], preset=e["preset"], error=e["error"], stop_reason=e["stop_reason"])


def decode_telemetry(data: dict) -> Any:
    from qwentui.telemetry.sampler import Snapshot

    return decode(Snapshot, data)
