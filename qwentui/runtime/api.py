"""The guard's control API: HTTP + JSON over a 0600 Unix socket (Starlette on uvicorn).

    GET  /state            one snapshot: engine, idle, cost, guard (see README)
    GET  /events           server-sent events: state, log, notice, bye
    GET  /log?lines=N      the engine log's masked tail
    GET  /history          recent telemetry samples (the GPU pane's sparklines)
    GET  /connect          base URL, model and API key for a chat client
    POST /idle/snooze | /idle/disable | /idle/enable | /idle/stop-now
    POST /engine/start | /engine/stop | /engine/restart
    POST /activity         {"source": "batch", "seconds": 60}: activity lease
    POST /cache/hit        {"saved_tokens": N}: a console's prompt-cache hit, for the ledger
    POST /guard/stop
    POST /guard/poweroff   {"reason", "command", "dry_run"}: stop the engine, close the ledger
                           row, run the poweroff command once; answers when done (batch --then)

Every response carries `X-Qwentui-Version`. A peer whose uid is not ours (SO_PEERCRED)
gets 403 before its request is read; the socket file is 0600 in a 0700 dir anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from qwentui import __version__
from qwentui.runtime.client import CLIENT_HEADER, VERSION_HEADER

QUEUE_MAX = 2000


class Control(Protocol):
    """What the API needs from the guard."""

    def state(self) -> dict[str, Any]: ...
    def log_tail(self, lines: int) -> dict[str, Any]: ...
    def history(self) -> list[Any]: ...
    def connect_info(self) -> dict[str, Any]: ...
    def command(self, name: str, body: dict[str, Any]) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...
    def console_attached(self, delta: int) -> None: ...


class EventHub:
    """Fans events out to every `/events` stream; a slow reader loses its oldest events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()
        self.closed = False

    def publish(self, kind: str, data: Any) -> None:
        item = (kind, data)
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(item)

    def close(self) -> None:
        """Tell every stream the guard is going away, then end them."""
        self.publish("bye", {"pid": os.getpid()})
        self.closed = True
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def stream(self, first: list[tuple[str, Any]]) -> AsyncIterator[bytes]:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        self._queues.add(queue)
        try:
            for kind, data in first:
                yield _sse(kind, data)
            while not self.closed or not queue.empty():
                try:
                    item = await asyncio.wait_for(queue.get(), 15.0)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    break
                yield _sse(*item)
        finally:
            self._queues.discard(queue)


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


COMMANDS = ("idle/snooze", "idle/disable", "idle/enable", "idle/stop-now", "engine/start", "engine/stop",
            "engine/restart", "activity", "cache/hit", "guard/stop", "guard/poweroff")


def build_app(control: Control, hub: EventHub) -> Starlette:
    headers = {VERSION_HEADER: __version__}

    def reply(data: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(data, status_code=status, headers=headers)

    async def state(request: Request) -> Response:
        return reply(control.state())

    async def log(request: Request) -> Response:
        try:
            lines = max(1, min(int(request.query_params.get("lines", "200")), 5000))
        except ValueError:
            return reply({"error": "lines must be an integer"}, 400)
        return reply(control.log_tail(lines))

    async def history(request: Request) -> Response:
        return reply({"samples": control.history()})

    async def connect(request: Request) -> Response:
        return reply(control.connect_info())

    async def events(request: Request) -> Response:
        console = request.headers.get(CLIENT_HEADER) == "console"

        async def body() -> AsyncIterator[bytes]:
            if console:
                control.console_attached(+1)
            try:
                async for chunk in hub.stream([("state", control.state())]):
                    yield chunk
            finally:
                if console:
                    control.console_attached(-1)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    async def command(request: Request) -> Response:
        name = request.url.path.strip("/")
        try:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return reply({"ok": False, "error": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return reply({"ok": False, "error": "the body must be a JSON object"}, 400)
        result = control.command(name, body)
        if inspect.isawaitable(result):  # a command that answers when it is done (guard/poweroff)
            result = await result
        return reply(result, 200 if result.get("ok", True) else 409)

    routes = [Route("/state", state), Route("/log", log), Route("/history", history),
              Route("/connect", connect), Route("/events", events)]
    routes += [Route(f"/{name}", command, methods=["POST"]) for name in COMMANDS]
    return Starlette(routes=routes)


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid (Linux SO_PEERCRED), None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", raw)[1]


def _protocol_class() -> type:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCheckedProtocol(H11Protocol):
        """Refuses a connection from another uid before reading its request."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                transport.close()
                return
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if getattr(self, "transport", None) is None:
                return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if getattr(self, "transport", None) is None:
                return
            super().connection_lost(exc)

    return PeerCheckedProtocol


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600 from the start (umask while binding)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


class ApiServer:
    """uvicorn serving the app on an already bound socket, without its signal handlers."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            def capture_signals(self):  # the guard owns SIGINT/SIGTERM/SIGHUP
                return contextlib.nullcontext()

        config = uvicorn.Config(app, http=_protocol_class(), lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=2, ws="none")
        self.server = Server(config)
        self.sock = sock

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
