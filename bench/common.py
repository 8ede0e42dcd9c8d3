"""Shared bits of the harness: the result row, timing helpers, a simulator child, a pty.

Everything here runs the real code paths (the `qwentui` CLI, the simulator process);
nothing is mocked. Times are `time.perf_counter()` unless said otherwise.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

MODEL = "Qwen/Qwen3-1.7B"


@dataclass(frozen=True)
class Figure:
    """One result line. `op` is how value compares with target ("<=", ">=" or "" for info only)."""

    name: str
    value: float
    unit: str
    target: float | None = None
    op: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        if self.target is None or not self.op:
            return True
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    def as_json(self) -> dict:
        value = None if self.value != self.value else round(self.value, 4)  # NaN is not JSON
        return {"name": self.name, "value": value, "unit": self.unit,
                "target": self.target, "ok": self.ok}

    def line(self) -> str:
        target = f"{self.op} {self.target:g}" if self.op and self.target is not None else "-"
        verdict = ("ok" if self.ok else "MISS") if self.op else "info"
        return f"{self.name:<26} {fmt(self.value):>10} {self.unit:<6} target {target:<9} {verdict:<4}  {self.note}"


def fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value)}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qwentui_argv() -> list[str]:
    """The installed console script (what users run), else `python -m qwentui`."""
    script = Path(sys.executable).with_name("qwentui")
    if script.exists():
        return [str(script)]
    found = shutil.which("qwentui")
    return [found] if found else [sys.executable, "-m", "qwentui"]


def wall_times(argv: list[str], runs: int, env: dict | None = None) -> list[float]:
    """Wall time of `argv` run to completion, `runs` times (output discarded)."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        out.append(time.perf_counter() - t0)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- simulator child


@dataclass
class Sim:
    proc: subprocess.Popen
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def sim_argv(port: int, *extra: str, tokens_per_s: float = 2000, cold_start: str = "0.2s") -> list[str]:
    return [sys.executable, "-m", "qwentui.sim", "--model-path", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--reasoning-parser", "qwen3", "--enable-metrics",
            "--sim-cold-start", cold_start, "--sim-tokens-per-s", str(tokens_per_s), *extra]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")


@contextmanager
def running_sim(*extra: str, tokens_per_s: float = 2000) -> Iterator[Sim]:
    """The simulator on a free loopback port, ready; SIGTERM then SIGKILL of its group on exit."""
    port = free_port()
    proc = subprocess.Popen(sim_argv(port, *extra, tokens_per_s=tokens_per_s), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    sim = Sim(proc, port)
    threading.Thread(target=lambda: [sim.lines.append(x) for x in proc.stderr], daemon=True).start()
    try:
        wait_http(sim.base_url + "/ready", proc=proc)
        yield sim
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# ---------------------------------------------------------------- pseudo-terminal


class PtyProcess:
    """A child on its own pty (80×24 by default) whose every output byte is timestamped."""

    def __init__(self, argv: list[str], env: dict, cols: int = 80, rows: int = 24) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     preexec_fn=_controlling_tty, close_fds=True)
        os.close(slave)
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            with self._lock:
                self.chunks.append((time.perf_counter(), data))

    def output(self) -> bytes:
        with self._lock:
            return b"".join(d for _, d in self.chunks)

    def bytes_between(self, t0: float, t1: float) -> int:
        with self._lock:
            return sum(len(d) for t, d in self.chunks if t0 <= t < t1)

    def first_time_containing(self, needle: bytes) -> float | None:
        """When the output first contained `needle` (it may straddle reads)."""
        with self._lock:
            chunks = list(self.chunks)
        seen = b""
        for t, data in chunks:
            seen += data
            if needle in seen:
                return t
        return None

    def wait_for(self, needle: bytes, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = self.first_time_containing(needle)
            if found is not None:
                return found
            time.sleep(0.01)
        return self.first_time_containing(needle)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self, timeout: float = 10.0, kill: bool = False) -> None:
        """SIGTERM (unless `kill`), then SIGKILL of its session; the reader ends on EIO."""
        if self.proc.poll() is None and not kill:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._reader.join(2.0)
        os.close(self.master)


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def app_env(xdg_root: Path, **extra: str) -> dict:
    """Environment for a console child: a real terminal type, isolated XDG dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWENTUI_")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", LANG="C.UTF-8", LC_ALL="C.UTF-8",
               PYTHONUNBUFFERED="1")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        env[var] = str(xdg_root / sub)
    env.update(extra)
    return env


@dataclass(frozen=True)
class Ctx:
    """What every figure gets: the mode and a scratch dir (isolated XDG dirs live under it)."""

    quick: bool
    tmp: Path

    def pick(self, quick, full):
        return quick if self.quick else full
