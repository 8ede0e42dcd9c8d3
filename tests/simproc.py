"""Run the SGLang simulator (`python -m qwentui.sim`) as a real child process for tests.

    with running_sim("--max-running-requests", "2") as sim:
        httpx.get(sim.base_url + "/v1/models", headers=sim.headers)

Each run binds a fresh free port on 127.0.0.1. stderr/stdout are drained by threads into
lists (the pipe never fills); `stderr_lines()` returns what arrived so far. On exit the
simulator gets SIGTERM, then SIGKILL after `stop_timeout`; its scheduler child dies with it.
Each simulator runs in its own session/process group (pgid == pid), as the supervisor starts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from tests.conftest import free_port

MODEL = "Qwen/Qwen3-1.7B"
READY_LINE = "The server is fired up and ready to roll!"


def terminate(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL; the exit status (negative = that signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class SimProc:
    proc: subprocess.Popen
    port: int
    api_key: str | None = None
    argv: list[str] = field(default_factory=list)
    run_dir: object = None  # the sim's TMPDIR: its SGLang-like leftovers go there, removed on stop
    _stderr: list[str] = field(default_factory=list)
    _stdout: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_lines(self) -> list[str]:
        return list(self._stderr)

    def stdout_lines(self) -> list[str]:
        return list(self._stdout)

    def wait_for_line(self, text: str, timeout: float = 15.0, stream: str = "stderr") -> str:
        """Block until a line containing `text` appears; AssertionError (with the log) otherwise."""
        lines = self._stderr if stream == "stderr" else self._stdout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the drain threads catch the last lines
                for line in list(lines):
                    if text in line:
                        return line
                break
            time.sleep(0.02)
        raise AssertionError(f"simulator never logged {text!r} (exit={self.proc.poll()}):\n"
                             + "\n".join(self._stderr[-30:]))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """The ready line, or `/ready` 200 when `--log-level warning` hides that line."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any(READY_LINE in line for line in list(self._stderr)):
                return
            if any("--log-level" in a for a in self.argv):
                try:
                    if httpx.get(self.base_url + "/ready", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            time.sleep(0.02)
        self.wait_for_line(READY_LINE, 0.5)

    def children(self) -> list[int]:
        """PIDs whose parent is the simulator (the `sglang::scheduler` child)."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.proc.pid:
                    out.append(int(entry))
        return out

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL; returns the exit status (negative = killed by that signal)."""
        terminate(self.proc, timeout)
        try:  # nothing of the group may outlive the test (the child normally dies by PDEATHSIG)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.run_dir is not None:
            self.run_dir.clean()
        return self.proc.returncode


def _drain(stream, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line.rstrip("\n"))
    stream.close()


def sim_argv(port: int, *extra_args: str, cold_start: str = "0.2s", tokens_per_s: float = 2000,
             api_key: str | None = None, metrics: bool = True, reasoning_parser: bool = True) -> list[str]:
    argv = [sys.executable, "-m", "qwentui.sim", "--model-path", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--sim-cold-start", cold_start, "--sim-tokens-per-s", str(tokens_per_s)]
    if api_key:
        argv += ["--api-key", api_key]
    if metrics:
        argv.append("--enable-metrics")
    if reasoning_parser:
        argv += ["--reasoning-parser", "qwen3"]
    return argv + list(extra_args)


def start_sim(*extra_args: str, port: int | None = None, env: dict[str, str] | None = None, **kw) -> SimProc:
    """Start without waiting; the caller must stop() it (prefer `running_sim`)."""
    port = port or free_port()
    argv = sim_argv(port, *extra_args, **kw)
    from qwentui.engine.rundir import RunDir

    run_dir = RunDir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **run_dir.env(), **(env or {})}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # own group, like the supervisor
    sim = SimProc(proc=proc, port=port, api_key=kw.get("api_key"), argv=argv, run_dir=run_dir)
    for stream, sink in ((proc.stderr, sim._stderr), (proc.stdout, sim._stdout)):
        threading.Thread(target=_drain, args=(stream, sink), daemon=True).start()
    return sim


@contextmanager
def running_sim(*extra_args: str, cold_start: str = "0.2s", tokens_per_s: float = 2000,
                api_key: str | None = None, metrics: bool = True, reasoning_parser: bool = True,
                wait_ready: bool = True, port: int | None = None, stop_timeout: float = 10.0,
                env: dict[str, str] | None = None) -> Iterator[SimProc]:
    sim = start_sim(*extra_args, port=port, env=env, cold_start=cold_start, tokens_per_s=tokens_per_s,
                    api_key=api_key, metrics=metrics, reasoning_parser=reasoning_parser)
    try:
        if wait_ready:
            sim.wait_ready()
        yield sim
    finally:
        sim.stop(stop_timeout)
