"""The engine's whole life: spawn, phases, readiness, liveness, stop, crash.

One code path for SGLang and the simulator. Readiness is the ready log line (read from our
own child's output) or `/health` 200 while one of our child's processes owns the listening
socket (another engine on the same port must not pass for ours), polled once per
`health_interval` during start-up only; after ready the process itself and the cheap
`/ready` are watched (every SGLang `/health` runs a real generation).

Stop is bounded and clean: `/abort_request {"abort_all": true}`, SIGTERM to the main
process (launched with SGL_FORCE_SHUTDOWN=1, so SGLang skips its unbounded drain but still
releases GPU memory), SIGKILL to the group only after `stop_grace`; then the engine's
leftovers (rundir.py) are removed.

Call `start()` on the event loop's own thread (in Textual: an async worker, never
`thread=True`): PR_SET_PDEATHSIG fires when the *thread* that forked the engine exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from qwentui import __version__
from qwentui.config import Config, format_duration
from qwentui.engine import hints, phases, preflight, procs, rundir
from qwentui.engine.rundir import RunDir
from qwentui.engine.argv import LaunchPlan, plan
from qwentui.engine.logsink import RELAY_SECRETS_ENV, LineSplitter, LogSink, Masker
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.errors import QwentuiError

if TYPE_CHECKING:  # imported where used: the console paints its first frame before it needs them
    import httpx
    import psutil  # engine.procs imports it anyway

log = logging.getLogger(__name__)

StatusCallback = Callable[[EngineStatus], None]
# srt/entrypoints/http_server.py (health_generate) logs this, then sets ServerStatus.UnHealthy
UNHEALTHY_LINE = "Health check failed. Server couldn't get a response from detokenizer"
LogCallback = Callable[[str], None]


class EngineFailed(QwentuiError):
    """The engine crashed, timed out or was stopped before it became ready."""

    title = "Engine failed"


class Supervisor:
    """Owns one engine process tree (or, attached, watches a server it must never stop)."""

    STATUS_TAIL = 20

    def __init__(self, cfg: Config, *, on_status: StatusCallback | None = None,
                 on_log: LogCallback | None = None, clock: Callable[[], float] = time.time,
                 gpu_name: str | None = None, preset: str | None = None, keep_engine: bool = False,
                 health_interval: float = 1.0, liveness_interval: float = 5.0,
                 _attach: tuple[str, str] | None = None) -> None:
        self.cfg = cfg
        self.keep_engine = keep_engine
        self.health_interval = health_interval
        self.liveness_interval = liveness_interval
        self._listeners: list[StatusCallback] = [on_status] if on_status else []
        self._on_log = on_log
        self._clock = clock
        e = cfg.engine
        self.plan: LaunchPlan | None = None if _attach else plan(cfg, gpu_name, preset)
        url = _attach[0] if _attach else self.plan.base_url
        self._api_key = _attach[1] if _attach else self.plan.api_key
        self._served_model = self.plan.served_model if self.plan else (e.served_model_name or e.model)
        self._liveness_path = "/ready"
        self._sink = LogSink(None, Masker([self._api_key]))
        self._proc: asyncio.subprocess.Process | None = None
        self._fd: int | None = None
        self._splitter = LineSplitter()
        self._known: dict[int, psutil.Process] = {}
        self._tasks: list[asyncio.Task] = []
        self._ready = asyncio.Event()
        self._exited = asyncio.Event()
        self._exited.set()
        self._eof = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self._run_dir: RunDir | None = None
        self._foreign_port_logged = False
        self._status = EngineStatus(
            EngineState.STOPPED, "", e.kind, self._served_model, url,
            simulated=e.kind == "sim" and not _attach, attached=bool(_attach),
            preset=self.plan.preset if self.plan else "")

    # ----- public surface -------------------------------------------------------------

    @classmethod
    def attach(cls, url: str, api_key: str = "", *, cfg: Config | None = None,
               on_status: StatusCallback | None = None, clock: Callable[[], float] = time.time,
               liveness_interval: float = 5.0) -> "Supervisor":
        """Watch an already running server at `url`; stop() never touches it."""
        from qwentui.engine import attach

        return cls(cfg or Config(), on_status=on_status, clock=clock, liveness_interval=liveness_interval,
                   _attach=(attach.normalize_url(url), api_key))

    @property
    def status(self) -> EngineStatus:
        return self._status

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        """Call `callback(status)` on every change (on the event loop); returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    @property
    def base_url(self) -> str:
        return self._status.base_url

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def served_model(self) -> str:
        return self._served_model

    @property
    def attached(self) -> bool:
        return self._status.attached

    @property
    def log_path(self) -> Path | None:
        if self.plan is None:
            return None
        from qwentui import paths

        return paths.log_dir() / f"engine-{self.cfg.engine.port}.log"

    def pids(self) -> list[int]:
        """The engine's live process tree (root first); empty when not running or attached."""
        if self._proc is None or self._proc.returncode is not None or self.attached:
            return []
        return [p.pid for p in procs.descendants(self._proc.pid)]

    def log_lines(self) -> list[str]:
        """Masked, bounded tail of the engine's output."""
        return self._sink.lines()

    async def wait_exit(self) -> EngineStatus:
        """Until the engine process is gone (returns at once when none runs)."""
        await self._exited.wait()
        return self._status

    async def __aenter__(self) -> "Supervisor":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if self._status.running and not self.attached:
            await self.stop("error" if exc_type and not issubclass(exc_type, asyncio.CancelledError) else "user")

    # ----- start -----------------------------------------------------------------------

    def check(self) -> None:
        """Pre-launch checks (engine.python has SGLang, model reachable, port free): UsageError."""
        if not self.attached:
            preflight.run_all(self.cfg.engine)

    async def start(self) -> None:
        """Spawn and return once ready; EngineFailed on crash, timeout or a stop meanwhile."""
        if self.attached:
            await self._start_attached()
            return
        if self._status.running:
            raise QwentuiError(f"the engine is already {self._status.state.value}")
        self.check()
        await self._spawn()
        timeout = self.cfg.engine.startup_timeout
        try:
            await asyncio.wait_for(self._until_ready_or_exit(), timeout)
        except asyncio.TimeoutError:
            phase = self._status.phase
            await self.stop("timeout")
            self._set(state=EngineState.CRASHED,
                      error=f"engine not ready after {format_duration(timeout)} (stuck in {phase!r})",
                      hint="raise engine.startup_timeout (--startup-timeout) or read the log: "
                           f"{self.log_path}")
        except asyncio.CancelledError:
            await asyncio.shield(self.stop("user"))
            raise
        self._raise_unless_ready()

    def _raise_unless_ready(self) -> None:
        st = self._status
        if st.state is EngineState.READY:
            return
        if st.state is EngineState.CRASHED:
            raise EngineFailed(st.error or "engine failed", hint=st.hint)
        raise EngineFailed(f"engine stopped before it was ready ({st.stop_reason or 'stopped'})")

    async def _spawn(self) -> None:
        assert self.plan is not None
        self._sink.close()
        self._sink = LogSink(self.log_path, Masker([self._api_key]))
        self._splitter = LineSplitter()
        self._ready, self._exited, self._eof = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._sink.write(f"=== qwentui {__version__}: starting {self.plan.kind} engine, "
                         f"preset {self.plan.preset}: {' '.join(self.plan.argv)}")
        stale = rundir.sweep_stale()
        if stale:
            self._sink.write(f"=== qwentui: removed {stale} leftover file(s) of engines whose qwentui was killed")
        self._run_dir = run_dir = RunDir()
        argv = list(self.plan.argv)
        if self.plan.config_file():  # the key goes in a 0600 file, never argv (ps, /proc/PID/cmdline)
            argv += ["--config", str(run_dir.write_config(self.plan.config_file()))]
        # SGL_FORCE_SHUTDOWN: SGLang's SIGTERM handler skips the drain that has no time limit
        # but still sends ShutdownReq and frees GPU memory (srt/managers/tokenizer_manager.py:
        # sigterm_watchdog).
        env = {**os.environ, **run_dir.env(), "SGL_FORCE_SHUTDOWN": "1"}
        try:
            proc, fd = await procs.spawn(argv, pdeathsig=not self.keep_engine, env=env)
        except BaseException:
            run_dir.clean()
            raise
        self._proc, self._fd = proc, fd
        run_dir.write_owner(proc.pid)
        self._known = {}
        self._remember_tree()
        asyncio.get_running_loop().add_reader(fd, self._on_readable)
        self._set(state=EngineState.STARTING, phase=phases.LAUNCHING, pid=proc.pid,
                  started_at=self._clock(), ready_at=None, stop_reason=None, error=None,
                  hint=None, exit_code=None, responsive=True, attached=False)
        self._tasks = [asyncio.create_task(self._watch_exit(proc)), asyncio.create_task(self._monitor())]

    async def _until_ready_or_exit(self) -> None:
        waits = [asyncio.create_task(self._ready.wait()), asyncio.create_task(self._exited.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    # ----- output, phases, readiness -------------------------------------------------------

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            lines = self._splitter.feed(data)
        else:
            self._close_pipe()
            lines = self._splitter.flush()
            self._eof.set()
        for line in lines:
            self._handle_line(line)

    def _close_pipe(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    def _handle_line(self, line: str) -> None:
        masked = self._sink.write(line)
        if self._on_log is not None:
            _call(self._on_log, masked)
        if self._status.state is EngineState.READY and UNHEALTHY_LINE in line:
            self._set(unhealthy=True, responsive=False,
                      error="SGLang marked itself UnHealthy: a health check got no answer from the scheduler",
                      hint="restart the engine (F5); if it recurs, read the engine log (F6)")
        if self._status.state is not EngineState.STARTING:
            return
        phase = phases.advance(self._status.phase, line)
        if phase == phases.READY:
            self._mark_ready()
        elif phase != self._status.phase:
            self._set(phase=phase)

    def _mark_ready(self) -> None:
        if self._status.state is EngineState.STARTING:
            if self._run_dir is not None:
                self._run_dir.remove_config()  # read at launch; the key need not stay on disk
            self._set(state=EngineState.READY, phase=phases.READY, ready_at=self._clock())
            self._ready.set()

    def _answered_by_us(self) -> bool:
        """A /health 200 counts only if our process tree owns the listening socket.

        A second qwentui on the same port would otherwise adopt the first one's engine
        while its own engine is still loading (and later fails to bind).
        """
        pids = [p.pid for p in procs.alive(self._known.values())]
        owner = procs.owns_listener(pids, self.cfg.engine.port)
        if owner:
            return True
        if not self._foreign_port_logged:
            self._foreign_port_logged = True
            who = procs.port_owner(self.cfg.engine.port) if owner is False else None
            self._sink.write(f"=== qwentui: /health answered on port {self.cfg.engine.port}, but not by our "
                             f"engine ({who or 'owner unknown'}); waiting for our engine's ready line")
        return False

    async def _monitor(self) -> None:
        """/health during start-up only; afterwards /ready; also remembers the process tree."""
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, trust_env=False) as client:
            while self._status.state in (EngineState.STARTING, EngineState.READY):
                self._remember_tree()
                if self._status.state is EngineState.STARTING:
                    if (await _probe(client, "/health", timeout=5.0) and self._status.state is EngineState.STARTING
                            and self._answered_by_us()):
                        self._sink.write("=== qwentui: /health answered 200: engine ready")
                        self._mark_ready()
                    await asyncio.sleep(self.health_interval)
                    continue
                ok = await _probe(client, self._liveness_path, timeout=3.0)
                if self._status.state is not EngineState.READY:
                    continue
                if ok and (not self._status.responsive or self._status.unhealthy):
                    self._set(responsive=True, unhealthy=False, error=None, hint=None)
                elif not ok and self._status.responsive:
                    self._set(responsive=False, error=f"engine is not answering {self._liveness_path}")
                await asyncio.sleep(self.liveness_interval)

    def _remember_tree(self) -> None:
        if self._proc is not None:
            for proc in procs.descendants(self._proc.pid):
                self._known.setdefault(proc.pid, proc)

    # ----- exit, crash ----------------------------------------------------------------------

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        try:
            await asyncio.wait_for(self._eof.wait(), 0.5)  # the last lines say why it died
        except asyncio.TimeoutError:
            pass
        if self._status.state is not EngineState.STOPPING:
            await self._reap_leftovers()
            self._close_pipe()
            self._clean_run_dir()
            self._record_unexpected_exit(code)
        self._exited.set()

    def _record_unexpected_exit(self, code: int) -> None:
        st = self._status
        if code == 0 and st.state is EngineState.READY:
            self._sink.write("=== qwentui: engine exited on its own (code 0)")
            self._set(state=EngineState.STOPPED, stop_reason="external", exit_code=0, pid=None,
                      error="engine exited on its own (code 0)")
            return
        diagnosis = hints.diagnose(self._sink.lines(), code)
        during = f"while {st.phase}" if st.state is EngineState.STARTING else "after it was ready"
        error = f"engine exited with code {code} {during}"
        if diagnosis:
            error += f": {diagnosis.cause}"
        self._sink.write(f"=== qwentui: {error}")
        self._set(state=EngineState.CRASHED, stop_reason="crash", exit_code=code, pid=None, error=error,
                  hint=diagnosis.hint if diagnosis else f"read the engine log: {self.log_path}")

    async def _reap_leftovers(self) -> list[psutil.Process]:
        """SIGKILL whatever of the tree/group survived the main process; return the survivors."""
        pgid = self._proc.pid if self._proc else None
        found = list(self._known.values()) + (procs.group_members(pgid) if pgid else [])
        left = procs.alive(found)
        if not left:
            return []
        if pgid:
            procs.signal_group(pgid, signal.SIGKILL)
        procs.signal_each(left, signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 1.0
        while left and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
            left = procs.alive(left)
        return left

    # ----- stop ---------------------------------------------------------------------------------

    async def stop(self, reason: str = "user") -> None:
        """SIGTERM the engine → wait stop_grace → SIGKILL its group and tree → verify nothing is left."""
        if self.attached:
            for task in self._tasks:
                task.cancel()
            if self._status.state is not EngineState.STOPPED:
                self._set(state=EngineState.STOPPED, stop_reason=reason)
            return
        async with self._stop_lock:
            proc = self._proc
            if proc is None or self._status.state in (EngineState.STOPPED, EngineState.CRASHED):
                if proc is not None:
                    await self._reap_leftovers()
                return
            was_ready = self._status.state is EngineState.READY
            self._set(state=EngineState.STOPPING, stop_reason=reason)
            if was_ready:
                await self._abort_all()
            await self._terminate(proc)

    async def _abort_all(self) -> None:
        """Finish every in-flight request now, so SGLang has nothing to drain after SIGTERM."""
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with httpx.AsyncClient(base_url=self.base_url, headers=headers, trust_env=False) as client:
                response = await client.post("/abort_request", json={"abort_all": True}, timeout=2.0)
            self._sink.write(f"=== qwentui: POST /abort_request abort_all: HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            self._sink.write(f"=== qwentui: POST /abort_request failed ({type(exc).__name__}); stopping anyway")

    def _clean_run_dir(self) -> None:
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is None:
            return
        count = run_dir.clean()
        self._sink.write(f"=== qwentui: removed {count} leftover file(s) of this engine "
                         "(ZMQ sockets, /dev/shm load snapshot, metrics dir, launch config)")

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        grace = self.cfg.engine.stop_grace
        self._remember_tree()  # children may be re-parented once the parent dies
        self._sink.write(f"=== qwentui: stopping engine ({self._status.stop_reason}): SIGTERM, "
                         f"SIGKILL after {format_duration(grace)}")
        # SIGTERM goes to the main process only: SGLang drains, stops its scheduler/detokenizer
        # and exits 0. SIGTERM to the whole group would kill the scheduler first, and the main
        # process then takes its "child crashed" SIGQUIT path (no drain, exit -9). The group
        # and every remembered descendant get SIGKILL after the grace period.
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not await _wait_event(self._exited, grace):
            self._sink.write("=== qwentui: engine ignored SIGTERM; sending SIGKILL")
            procs.signal_group(proc.pid, signal.SIGKILL)
            procs.signal_each(procs.alive(self._known.values()), signal.SIGKILL)
            await _wait_event(self._exited, 1.0)
        left = await self._reap_leftovers()
        self._close_pipe()
        self._clean_run_dir()
        port_free = await procs.wait_port_free(self.cfg.engine.host, self.cfg.engine.port, 0.5)
        problems = ([f"processes still alive: {[p.pid for p in left]}"] if left else []) + (
            [f"port {self.cfg.engine.port} still in use"] if not port_free else [])
        self._sink.write(f"=== qwentui: engine stopped (code {proc.returncode})"
                         + (f"; {'; '.join(problems)}" if problems else ""))
        self._set(state=EngineState.STOPPED, phase="", pid=None, exit_code=proc.returncode,
                  error="; ".join(problems) or None, hint=None)
        for task in self._tasks:
            task.cancel()

    async def _start_attached(self) -> None:
        from qwentui.engine import attach

        self._set(state=EngineState.STARTING, phase=phases.LAUNCHING, started_at=self._clock(),
                  error=None, hint=None, stop_reason=None)
        try:
            found = await attach.probe_server(self.base_url, self._api_key)
        except QwentuiError as exc:
            self._set(state=EngineState.STOPPED, phase="", error=exc.message, hint=exc.hint)
            raise
        self._liveness_path = found.liveness_path
        self._served_model = found.model or self._served_model
        self._set(state=EngineState.READY, phase=phases.READY, ready_at=self._clock(),
                  model=self._served_model, simulated=found.simulated,
                  kind="sim" if found.simulated else self._status.kind)
        self._tasks = [asyncio.create_task(self._monitor())]

    # ----- keep-engine hand-over ---------------------------------------------------------------

    def detach(self) -> int:
        """Leave the engine running after qwentui exits; returns its PID.

        Only for engines spawned with keep_engine=True (no PDEATHSIG). The output pipe is
        handed to a small relay process that keeps writing the masked, rotating log.
        """
        if self.attached or self._proc is None or not self._status.running:
            raise QwentuiError("no engine of ours is running")
        if not self.keep_engine:
            raise QwentuiError("this engine dies with qwentui (PR_SET_PDEATHSIG); start it with --keep-engine")
        for task in self._tasks:
            task.cancel()
        if self._run_dir is not None:
            self._run_dir.remove_config()  # the directory itself stays: the engine still uses it
        fd, self._fd = self._fd, None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            for line in self._splitter.flush():
                self._handle_line(line)
            # O_NONBLOCK lives on the shared open file description: the relay's blocking
            # read() would raise BlockingIOError and leave the engine writing into a dead pipe.
            os.set_blocking(fd, True)
            env = dict(os.environ, **{RELAY_SECRETS_ENV: self._api_key})
            subprocess.Popen([sys.executable, "-m", "qwentui.engine.relay", str(self.log_path)],
                             stdin=fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env=env)
            os.close(fd)
        self._sink.close()
        pid = self._proc.pid
        self._set(attached=True, stop_reason="detached")
        return pid

    # ----- helpers -------------------------------------------------------------------------------

    def _set(self, **changes) -> None:
        tail = tuple(self._sink.lines()[-self.STATUS_TAIL:])
        self._status = dataclasses.replace(self._status, log_tail=tail, **changes)
        for listener in list(self._listeners):
            _call(listener, self._status)


def _call(callback: Callable, value) -> None:
    try:
        callback(value)
    except Exception:  # noqa: BLE001 - a broken listener must not break the supervisor
        log.exception("engine status listener failed")


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


async def _probe(client: httpx.AsyncClient, path: str, *, timeout: float) -> bool:
    import httpx

    try:
        response = await client.get(path, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
