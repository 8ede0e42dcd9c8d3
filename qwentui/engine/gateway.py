"""SGLang's model gateway `smg` as a supervised child in front of several engines.

    gw = Gateway(cfg.fleet, workers)   # workers: engine base URLs, checked by `check_workers`
    await gw.start()                   # returns once smg has registered every worker
    ...                                # gw.base_url is an OpenAI-compatible endpoint
    await gw.stop()                    # SIGTERM → fleet.stop_grace → SIGKILL, verified gone

smg 1.13 facts this relies on (read in its source and tried here): it registers each
`--worker-urls` entry through a job that probes `/health`, `/v1/models`, `/model_info` and
`/server_info`; a worker it rejects is logged as `Failed job: type=AddWorker, worker=URL,
error=…` and the gateway keeps running without it. `GET /workers` lists registered workers
with `is_healthy`. Its Prometheus listener defaults to 0.0.0.0:29000 without auth, so we always
pass `--prometheus-host 127.0.0.1`. On SIGTERM it drains readiness for ~5 s before it exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

import httpx
import psutil

from qwentui.config import FleetConfig, format_duration, is_loopback
from qwentui.engine import procs
from qwentui.engine.logsink import LineSplitter, LogSink, Masker
from qwentui.errors import QwentuiError, UsageError

INSTALL = "pip install 'qwentui[fleet]'"
LAUNCHING, REGISTERING, READY = "launching", "registering workers", "ready"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROUTER_UP = re.compile(r"Starting router on")
_REJECTED = re.compile(r"Failed job: type=AddWorker, worker=(\S+?),? error=(.*)")
_STEP_FAILED = re.compile(r'Step failed: .* worker URL (\S+?): (.*?)"?(?: will_retry=(\w+))?$')
NOT_AN_ENGINE_AFTER = 3  # a 4xx answer to smg's probes this often in a row: a server, but no engine


class GatewayFailed(QwentuiError):
    """smg exited or timed out before the fleet was ready."""

    title = "Gateway failed"


class WorkerRejected(GatewayFailed):
    """A worker URL that is no engine (bad input: exit 2)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class GatewayStatus:
    state: str  # "stopped" | "starting" | "ready" | "stopping" | "crashed"
    phase: str
    base_url: str
    workers: tuple[str, ...]
    pid: int | None = None
    error: str | None = None
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.state in ("starting", "ready", "stopping")


def find_smg() -> str | None:
    """The `smg` console script of qwentui's own environment first, then $PATH."""
    beside = Path(sys.executable).parent / "smg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("smg")


def require_smg() -> str:
    found = find_smg()
    if found is None:
        raise UsageError(f"the fleet needs SGLang's model gateway `smg`, which is not installed: {INSTALL}")
    return found


def normalize_workers(urls: Sequence[str]) -> list[str]:
    """Canonical base URLs; a URL that is not http(s) or appears twice → UsageError."""
    from qwentui.engine.attach import normalize_url

    if not urls:
        raise UsageError("no workers: give --worker URL (repeatable) or set fleet.workers in the config")
    out: list[str] = []
    for raw in urls:
        try:
            url = normalize_url(raw)
        except UsageError:
            raise UsageError(f"worker {raw!r} is not an http(s) URL like http://box-a:30000") from None
        if url in out:
            raise UsageError(f"worker {url} is listed twice; each engine may appear once")
        out.append(url)
    return out


async def worker_models(urls: Sequence[str], api_key: str = "", timeout: float = 5.0) -> dict[str, str | None]:
    """Each worker's served model from its `/v1/models` (None when its answer names none).

    A worker nobody answers at is a UsageError now; one that answers but is no engine is
    left to the gateway, whose reason is shown (`Gateway.start`).
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as client:
        found = await asyncio.gather(*(_model_of(client, url) for url in urls))
    down = [f"{url} ({err})" for url, (_, err) in zip(urls, found) if err]
    if down:
        raise UsageError(f"worker not reachable: {'; '.join(down)}; start its engine first or fix the URL")
    return {url: model for url, (model, _) in zip(urls, found)}


async def _model_of(client: httpx.AsyncClient, url: str) -> tuple[str | None, str | None]:
    try:
        response = await client.get(f"{url}/v1/models")
    except httpx.HTTPError as exc:
        return None, str(exc) or type(exc).__name__
    try:
        data = response.json().get("data") or []
        return (str(data[0]["id"]) if data else None), None
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None, None


async def all_simulated(urls: Sequence[str], api_key: str = "", timeout: float = 3.0) -> bool:
    """True when every worker is qwentui's simulator (its /server_info says so): the sim ledger."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as client:
        found = await asyncio.gather(*(_simulated(client, url) for url in urls))
    return bool(found) and all(found)


async def _simulated(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(f"{url}/server_info")).json().get("simulated") is True
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def check_one_model(models: dict[str, str | None]) -> str | None:
    """The fleet's single model; workers serving different models → UsageError."""
    by_model: dict[str, list[str]] = {}
    for url, model in models.items():
        if model is not None:
            by_model.setdefault(model, []).append(url)
    if len(by_model) > 1:
        listing = "; ".join(f"{m} at {', '.join(urls)}" for m, urls in by_model.items())
        raise UsageError(f"the workers serve different models ({listing}); a fleet serves one model")
    return next(iter(by_model), None)


def build_argv(smg: str, fleet: FleetConfig, workers: Sequence[str]) -> list[str]:
    """smg's command line; metrics are always loopback-only (its default is 0.0.0.0, no auth)."""
    argv = [smg, "launch", "--host", fleet.host, "--port", str(fleet.port), "--worker-urls", *workers,
            "--policy", fleet.policy, "--prometheus-host", "127.0.0.1", "--prometheus-port", str(fleet.metrics_port),
            "--worker-startup-timeout-secs", str(max(1, int(fleet.startup_timeout))),
            "--worker-startup-check-interval", "1",
            # SGLang's /health runs a generation; /ready is its cheap check. smg's default is /health
            # every 60 s with 3 misses, i.e. minutes of routing to a dead box.
            "--health-check-endpoint", "/ready", "--health-check-interval-secs", str(max(1, int(fleet.health_interval))),
            "--health-failure-threshold", "2",
            "--shutdown-grace-period-secs", str(max(1, int(fleet.stop_grace))), "--log-level", "info"]
    return argv


KEY_ENV = "QWENTUI_GATEWAY_API_KEY"
# smg is a Python console script: run it through its own interpreter with the key taken from the
# environment (readable by this user only) and put on sys.argv inside the process, so it never
# shows in /proc/PID/cmdline or `ps` the way `--api-key KEY` on the command line would.
_KEY_LAUNCHER = ("import os, runpy, sys; key = os.environ.pop({env!r}); "
                 "sys.argv = [{smg!r}, *sys.argv[1:], '--api-key', key]; "
                 "runpy.run_path({smg!r}, run_name='__main__')")


def script_python(path: str) -> str | None:
    """The interpreter of a Python script's shebang line, or None for anything else."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        words = words[1:]
    return words[0] if words and "python" in Path(words[0]).name else None


def launch_command(smg: str, fleet: FleetConfig, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`build_argv`'s argv made ready to run, plus extra environment: the API key travels in the
    environment, never argv."""
    if not fleet.api_key:
        return argv, {}
    python = script_python(smg)
    if python is None:
        raise UsageError(f"{smg} is not the Python `smg` script; qwentui cannot hand it fleet.api_key "
                         f"off the command line: {INSTALL}")
    return [python, "-c", _KEY_LAUNCHER.format(env=KEY_ENV, smg=smg), *argv[1:]], {KEY_ENV: fleet.api_key}


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class Gateway:
    """Owns one smg process: spawn, log, readiness (every worker registered), bounded stop."""

    def __init__(self, fleet: FleetConfig, workers: Sequence[str], *, smg: str | None = None,
                 log_path: Path | None = None, on_status: Callable[[GatewayStatus], None] | None = None,
                 poll_interval: float = 0.2) -> None:
        self.fleet, self.workers = fleet, list(workers)
        self.smg = smg or require_smg()
        self.poll_interval = poll_interval
        self._on_status = on_status
        self._log_path = log_path
        self._sink = LogSink(None, Masker([fleet.api_key]))
        self._splitter = LineSplitter()
        self._proc: asyncio.subprocess.Process | None = None
        self._fd: int | None = None
        self._known: dict[int, psutil.Process] = {}
        self._exited = asyncio.Event()
        self._rejected: list[str] = []
        self._probe_failures: dict[str, tuple[int, str]] = {}
        self._waiter: asyncio.Task | None = None
        self._stopped: asyncio.subprocess.Process | None = None  # the process stop() already finished
        host = _connect_host(fleet.host)
        self._status = GatewayStatus("stopped", "", f"http://{host}:{fleet.port}", tuple(self.workers))

    @property
    def status(self) -> GatewayStatus:
        return self._status

    @property
    def base_url(self) -> str:
        return self._status.base_url

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.fleet.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            from qwentui import paths

            self._log_path = paths.log_dir() / f"gateway-{self.fleet.port}.log"
        return self._log_path

    def log_lines(self) -> list[str]:
        return self._sink.lines()

    def pids(self) -> list[int]:
        if self._proc is None or self._proc.returncode is not None:
            return []
        return [p.pid for p in procs.descendants(self._proc.pid)]

    # ----- start --------------------------------------------------------------------------

    def check(self) -> None:
        """Ports free and no exposed gateway without a key: UsageError."""
        if not is_loopback(self.fleet.host) and not self.fleet.api_key:
            raise UsageError(f"fleet.host {self.fleet.host} is not loopback: set fleet.api_key so the "
                             "gateway is not open to anyone who can reach it")
        for key, host, port in (("fleet.port", self.fleet.host, self.fleet.port),
                                ("fleet.metrics_port", "127.0.0.1", self.fleet.metrics_port)):
            if not procs.port_free(host, port):
                owner = procs.port_owner(port)
                raise UsageError(f"{key} {port} is already in use" + (f" by {owner}" if owner else "")
                                 + f": choose another with --{key.split('.')[1].replace('_', '-')}")

    async def start(self) -> None:
        """Spawn smg and return once every worker is registered and healthy; GatewayFailed otherwise."""
        self.check()
        await self._spawn()
        try:
            await asyncio.wait_for(self._until_ready(), self.fleet.startup_timeout)
        except asyncio.TimeoutError:
            await self._fail(f"the gateway did not register every worker within "
                             f"{format_duration(self.fleet.startup_timeout)}" + self._pending_reasons())
        except BaseException:
            await asyncio.shield(self.stop())
            raise

    async def _spawn(self) -> None:
        self._sink.close()
        self._sink = LogSink(self.log_path, Masker([self.fleet.api_key]))
        self._splitter, self._rejected, self._exited = LineSplitter(), [], asyncio.Event()
        self._probe_failures = {}
        shown = build_argv(self.smg, self.fleet, self.workers)
        argv, extra_env = launch_command(self.smg, self.fleet, shown)
        self._sink.write(f"=== qwentui: starting the gateway: {' '.join(shown)}")
        self._proc, self._fd = await procs.spawn(argv, env=dict(os.environ, NO_COLOR="1", **extra_env))
        self._known = {p.pid: p for p in procs.descendants(self._proc.pid)}
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        self._set(state="starting", phase=LAUNCHING, pid=self._proc.pid, error=None, exit_code=None)
        self._waiter = asyncio.create_task(self._watch_exit(self._proc))

    async def _until_ready(self) -> None:
        headers = {"Authorization": f"Bearer {self.fleet.api_key}"} if self.fleet.api_key else {}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=2.0, trust_env=False) as client:
            while True:
                if self._exited.is_set():
                    await self._fail(f"smg exited with code {self._proc.returncode} before the fleet was ready"
                                     + _last_error(self._sink.lines()))
                if self._rejected:
                    await self._fail(self._rejected[0], WorkerRejected)
                healthy = await _healthy_workers(client)
                if set(self.workers) <= healthy:
                    self._sink.write(f"=== qwentui: gateway ready with {len(self.workers)} workers")
                    self._set(state="ready", phase=READY)
                    return
                await asyncio.sleep(self.poll_interval)

    async def _fail(self, message: str, error: type[GatewayFailed] = GatewayFailed) -> None:
        self._sink.write(f"=== qwentui: {message}")
        await self.stop(grace=1.0)  # nothing is in flight before ready: no drain to wait for
        self._set(state="crashed", error=message)
        raise error(message, hint=f"gateway log: {self.log_path}")

    # ----- output ------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        lines = self._splitter.feed(data) if data else self._splitter.flush()
        if not data:
            self._close_pipe()
        for line in lines:
            self._handle_line(_ANSI.sub("", line))

    def _handle_line(self, line: str) -> None:
        self._sink.write(line)
        if self._status.state != "starting":
            return
        rejected, failed = _REJECTED.search(line), _STEP_FAILED.search(line)
        if rejected:
            self._rejected.append(f"the gateway rejected worker {rejected.group(1)}: {_reason(rejected.group(2))}")
        elif failed:
            self._probe_failed(failed.group(1), failed.group(2), failed.group(3) != "false")
        elif _ROUTER_UP.search(line) and self._status.phase == LAUNCHING:
            self._set(phase=REGISTERING)

    def _probe_failed(self, url: str, reason: str, will_retry: bool) -> None:
        """smg retries a worker until its start-up timeout; a 4xx answer means no engine is there."""
        count = self._probe_failures.get(url, (0, ""))[0] + 1
        self._probe_failures[url] = (count, reason)
        if not will_retry or ("client error" in reason and count >= NOT_AN_ENGINE_AFTER):
            self._rejected.append(f"the gateway rejected worker {url}: {reason} (is it an SGLang engine?)")

    def _pending_reasons(self) -> str:
        reasons = [f"{url}: {reason}" for url, (_, reason) in self._probe_failures.items()]
        return f"; last probe errors: {'; '.join(reasons)}" if reasons else f" (see {self.log_path})"

    def _close_pipe(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._status.state not in ("stopping", "stopped"):
            self._sink.write(f"=== qwentui: smg exited on its own (code {code})")
            self._set(state="crashed", pid=None, exit_code=code,
                      error=self._status.error or f"the gateway exited with code {code}")
        self._exited.set()

    # ----- stop --------------------------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM → fleet.stop_grace → SIGKILL the group and every remembered process."""
        grace = self.fleet.stop_grace if grace is None else grace
        proc = self._proc
        if proc is None or proc is self._stopped:
            return
        if self._status.state not in ("crashed", "stopped"):
            self._set(state="stopping")
        self._known.update({p.pid: p for p in procs.descendants(proc.pid)})
        if proc.returncode is None:
            self._sink.write(f"=== qwentui: stopping the gateway: SIGTERM, SIGKILL after "
                             f"{format_duration(grace)}")
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not await _wait(self._exited, grace):
                self._sink.write("=== qwentui: smg still running after the grace period; sending SIGKILL")
        procs.signal_group(proc.pid, signal.SIGKILL)
        procs.signal_each(procs.alive(self._known.values()), signal.SIGKILL)
        await _wait(self._exited, 2.0)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        self._close_pipe()
        left = procs.alive(self._known.values())
        self._sink.write(f"=== qwentui: gateway stopped (code {proc.returncode})"
                         + (f"; still alive: {[p.pid for p in left]}" if left else ""))
        if self._status.state != "crashed":
            self._set(state="stopped", phase="", pid=None, exit_code=proc.returncode,
                      error=f"processes still alive: {[p.pid for p in left]}" if left else None)
        self._stopped = proc
        self._sink.close()

    def _set(self, **changes) -> None:
        self._status = dataclasses.replace(self._status, **changes)
        if self._on_status is not None:
            self._on_status(self._status)


async def _healthy_workers(client: httpx.AsyncClient) -> set[str]:
    try:
        workers = (await client.get("/workers")).json().get("workers") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return set()
    return {w.get("url") for w in workers if isinstance(w, dict) and w.get("is_healthy")}


def _reason(error: str) -> str:
    """smg's nested workflow error cut to its last, most specific part."""
    text = error.strip().strip('"')
    marker = " - "
    return text.rsplit(marker, 1)[-1] if marker in text else text


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        if "ERROR" in line or "error:" in line.lower():
            return f": {line.strip()[-300:]}"
    return ""


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True
