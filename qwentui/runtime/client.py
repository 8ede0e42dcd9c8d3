"""A typed client of the guard's control API (httpx over the Unix socket).

`GuardClient` (blocking: the CLI) and `AsyncGuardClient` (the console) share one request
and error mapping: no socket / nobody answering → `NoGuard` (exit 3); a guard from
another qwentui version → `GuardVersionMismatch` (polite, names both versions), except
for `stop_guard`, which works across versions so an old guard can always be ended.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from qwentui import __version__
from qwentui.errors import QwentuiError
from qwentui.runtime.place import GuardPlace, place

BASE = "http://guard"
VERSION_HEADER = "X-Qwentui-Version"  # on every answer of the control API
CLIENT_HEADER = "X-Qwentui-Client"  # "console" on a console's /events stream
STOPPED = ("stopped", "crashed")  # engine states in which nothing runs


class NoGuard(QwentuiError):
    exit_code = 3


class GuardVersionMismatch(QwentuiError):
    exit_code = 1


def _where(where: GuardPlace | Path | str | None, kind: str) -> Path:
    if where is None:
        return place(kind).socket
    return where.socket if isinstance(where, GuardPlace) else Path(where)


def _no_guard(sock: Path) -> NoGuard:
    return NoGuard(f"no guard runs for this state dir (no answer on {sock}); 'qwentui' starts one")


def _checked(response: httpx.Response, sock: Path, *, any_version: bool = False) -> dict[str, Any]:
    if response.status_code == 403:
        raise QwentuiError(f"the guard at {sock} refused this connection (it belongs to another user)")
    version = response.headers.get(VERSION_HEADER)
    if version is None:
        raise QwentuiError(f"{sock} did not answer like a qwentui guard (HTTP {response.status_code})")
    if version != __version__ and not any_version:
        raise GuardVersionMismatch(
            f"the running guard is qwentui {version}; this is qwentui {__version__}",
            hint="stop it with 'qwentui stop' (its engine too), then start again with this version")
    try:
        data = response.json()
    except ValueError:
        raise QwentuiError(f"the guard sent a reply that is not JSON (HTTP {response.status_code})") from None
    if response.status_code >= 400 and not isinstance(data, dict):
        raise QwentuiError(f"the guard refused: HTTP {response.status_code}")
    return data


class GuardClient:
    """Blocking client; one short-lived connection per call."""

    def __init__(self, where: GuardPlace | Path | str | None = None, *, kind: str = "sglang",
                 timeout: float = 5.0) -> None:
        self.socket = _where(where, kind)
        self._timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None, *, any_version: bool = False,
              timeout: float | None = None) -> dict[str, Any]:
        if not self.socket.exists():
            raise _no_guard(self.socket)
        transport = httpx.HTTPTransport(uds=str(self.socket))
        try:
            with httpx.Client(transport=transport, base_url=BASE, timeout=timeout or self._timeout,
                              trust_env=False) as http:
                response = http.request(method, path, json=body if method == "POST" else None)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError, ConnectionRefusedError):
            raise _no_guard(self.socket) from None
        except httpx.TimeoutException:
            raise QwentuiError(f"the guard at {self.socket} did not answer within {timeout or self._timeout:g}s") \
                from None
        return _checked(response, self.socket, any_version=any_version)

    def alive(self) -> bool:
        try:
            self._call("GET", "/state", any_version=True, timeout=2.0)
        except QwentuiError:
            return False
        return True

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def command(self, name: str, body: dict | None = None) -> dict[str, Any]:
        return self._call("POST", f"/{name}", body or {})

    def connect_info(self) -> dict[str, Any]:
        return self._call("GET", "/connect")

    def engine_ready(self, timeout: float) -> dict[str, Any]:
        """Start the guard's engine when it is not running and wait until it is ready;
        returns `/connect`. QwentuiError when it crashes or stays not ready."""
        deadline = time.monotonic() + timeout
        engine = self.state()["engine"]
        if engine["state"] in STOPPED:
            self.command("engine/start")
        while engine["state"] != "ready":
            if time.monotonic() > deadline:
                raise QwentuiError(f"the guard's engine is not ready after {timeout:g}s ({engine['state']})")
            time.sleep(0.2)
            engine = self.state()["engine"]
            if engine["state"] == "crashed":
                raise QwentuiError(f"the guard's engine crashed: {engine.get('error') or 'see its log'}")
        return self.connect_info()

    def stop_engine(self, reason: str, timeout: float) -> dict[str, Any] | None:
        """Ask the guard to stop its engine (its ledger row records `reason`) and wait until it
        has; returns `/state` then, None when the guard ended with it (a foreground serve).
        QwentuiError when it refuses or takes too long."""
        state = self.state()
        if state["engine"]["state"] not in STOPPED:
            answer = self.command("engine/stop", {"reason": reason})
            state = self.state()
            if not answer.get("ok", True) and state["engine"]["state"] not in STOPPED:
                raise QwentuiError(f"the guard refused: {answer.get('error') or 'no reason given'}")
        deadline = time.monotonic() + timeout
        while state["engine"]["state"] not in STOPPED:
            if time.monotonic() > deadline:
                raise QwentuiError(f"the guard's engine did not stop within {timeout:g}s "
                                   f"({state['engine']['state']})")
            time.sleep(0.2)
            try:
                state = self.state()
            except NoGuard:  # the stop was accepted; a guard that ends takes its engine along
                return None
        return state

    def power_off(self, reason: str, command: list[str], *, dry_run: bool, timeout: float) -> dict[str, Any]:
        """Ask the guard to stop its engine, close its ledger row and run `command` once; answers
        when that is done: {"ok", "message", "error", "hint", ...}, ok false when it refused or failed."""
        body = {"reason": reason, "command": list(command), "dry_run": dry_run}
        return self._call("POST", "/guard/poweroff", body, timeout=timeout)

    async def hold_activity(self, source: str = "batch", every: float = 20.0) -> None:
        """Keep an activity lease (batch running) until cancelled; then release it."""
        import asyncio

        try:
            while True:
                await asyncio.to_thread(self.command, "activity", {"source": source, "seconds": 3 * every})
                await asyncio.sleep(every)
        except QwentuiError:
            return  # the guard went away: nothing to hold
        finally:
            try:
                await asyncio.shield(asyncio.to_thread(self.command, "activity", {"source": source, "seconds": 0}))
            except (QwentuiError, asyncio.CancelledError):
                pass

    def stop_guard(self, reason: str = "user") -> dict[str, Any]:
        return self._call("POST", "/guard/stop", {"reason": reason}, any_version=True)

    def wait_gone(self, pid: int, timeout: float) -> bool:
        """Until process `pid` (the guard) has exited; False on timeout."""
        import psutil

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(0.05)
        return False


class AsyncGuardClient:
    """The console's client: calls plus the `/events` stream."""

    def __init__(self, where: GuardPlace | Path | str | None = None, *, kind: str = "sglang",
                 timeout: float = 5.0, console: bool = True) -> None:
        self.socket = _where(where, kind)
        self._timeout = timeout
        self._console = console
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
            self._http = httpx.AsyncClient(transport=transport, base_url=BASE, timeout=self._timeout,
                                           trust_env=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        try:
            response = await self._client().request(method, path, json=body if method == "POST" else None)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, FileNotFoundError):
            raise _no_guard(self.socket) from None
        except httpx.TimeoutException:
            raise QwentuiError(f"the guard did not answer within {self._timeout:g}s") from None
        return _checked(response, self.socket)

    async def state(self) -> dict[str, Any]:
        return await self._call("GET", "/state")

    async def command(self, name: str, body: dict | None = None) -> dict[str, Any]:
        return await self._call("POST", f"/{name}", body or {})

    async def connect_info(self) -> dict[str, Any]:
        return await self._call("GET", "/connect")

    async def log_tail(self, lines: int = 2000) -> dict[str, Any]:
        return await self._call("GET", f"/log?lines={lines}")

    async def history(self) -> list[Any]:
        return (await self._call("GET", "/history")).get("samples", [])

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """(kind, data) from `/events` until the guard ends the stream or goes away."""
        headers = {CLIENT_HEADER: "console" if self._console else "client"}
        try:
            async with self._client().stream("GET", "/events", headers=headers,
                                             timeout=httpx.Timeout(self._timeout, read=None)) as response:
                _checked_stream(response, self.socket)
                kind, data = "message", []
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield kind, json.loads("\n".join(data))
                        kind, data = "message", []
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, FileNotFoundError):
            raise _no_guard(self.socket) from None


def _checked_stream(response: httpx.Response, sock: Path) -> None:
    if response.status_code == 403:
        raise QwentuiError(f"the guard at {sock} refused this connection (it belongs to another user)")
    version = response.headers.get(VERSION_HEADER)
    if version != __version__:
        raise GuardVersionMismatch(
            f"the running guard is qwentui {version or 'unknown'}; this is qwentui {__version__}",
            hint="stop it with 'qwentui stop' (its engine too), then start again with this version")
