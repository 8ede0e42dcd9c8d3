"""`qwentui serve` as a real process: signals, SIGKILL (PDEATHSIG), --attach, crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from qwentui.engine import procs
from qwentui.sim.launch import DRAIN_POLL_S
from tests.waits import poll_until

FAST_ENV = {"QWENTUI_ENGINE_OVERRIDES": '{ "--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000 }'}


class Serve:
    """`python -m qwentui serve ...` as a child process with its output collected."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        full_env = {**os.environ, **FAST_ENV, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "qwentui", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=full_env, stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)
                raise AssertionError(f"never saw {text!r}:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def engine_pids(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def alive(pids: list[int]) -> list[int]:
    return [p.pid for p in procs.alive(psutil.Process(pid) for pid in pids if psutil.pid_exists(pid))]


def port_released(port: int, timeout: float) -> bool:
    """The kernel frees a killed process's listening socket a moment after the process is gone."""
    return poll_until(lambda: procs.port_free("127.0.0.1", port), timeout)


def wait_gone(pids: list[int], timeout: float) -> None:
    assert poll_until(lambda: not alive(pids), timeout), f"still alive: {alive(pids)}"


@pytest.mark.slow
@pytest.mark.parametrize("sig,reason", [(signal.SIGINT, "user"), (signal.SIGTERM, "signal"), (signal.SIGHUP, "signal")])
def test_signal_stops_the_engine_completely(sig, reason, port):
    serve = Serve("serve", "--demo", "--port", str(port))  # default grace: a clean stop, no SIGKILL
    try:
        serve.wait_for("Ctrl+C to stop the engine")
        pids = serve.engine_pids()
        assert len(pids) >= 2
        t0 = time.monotonic()
        serve.proc.send_signal(sig)
        assert serve.proc.wait(15) == 0
        # SGLang's 5 s SIGTERM tick + the scheduler's exit, plus interpreter exit
        assert time.monotonic() - t0 <= DRAIN_POLL_S + 1.0 + 2.0
        assert alive(pids) == [] and procs.port_free("127.0.0.1", port)
        out = serve.output()
        assert f"stopping engine ({reason})" in out and "SIMULATED" in out
        assert f"base URL : http://127.0.0.1:{port}/v1" in out and "loading weights" in out
    finally:
        serve.kill()


@pytest.mark.slow
def test_sigkill_of_qwentui_takes_the_engine_down(port):
    serve = Serve("serve", "--demo", "--port", str(port))
    try:
        serve.wait_for("Ctrl+C to stop the engine")
        pids = serve.engine_pids()
        serve.proc.kill()
        serve.proc.wait(5)
        wait_gone(pids, 3.0)
        assert port_released(port, 2.0)
    finally:
        serve.kill()


@pytest.mark.slow
def test_sigkill_during_start_up_takes_the_engine_down(port):
    serve = Serve("serve", "--demo", "--port", str(port),
                  env={"QWENTUI_ENGINE_OVERRIDES": '{ "--sim-cold-start" = "10s" }'})
    try:
        serve.wait_for("loading weights")
        pids = serve.engine_pids()
        serve.proc.kill()
        serve.proc.wait(5)
        wait_gone(pids, 3.0)
    finally:
        serve.kill()


@pytest.mark.slow
def test_attach_never_stops_the_server():
    from tests.simproc import running_sim

    with running_sim() as sim:
        serve = Serve("serve", "--attach", sim.base_url)
        try:
            serve.wait_for("Ctrl+C to leave the server running")
            assert "SIMULATED" in serve.output()
            serve.proc.send_signal(signal.SIGINT)
            assert serve.proc.wait(10) == 0
            assert "left the server at" in serve.output()
            assert sim.proc.poll() is None
        finally:
            serve.kill()


@pytest.mark.slow
def test_crash_while_serving_exits_1_with_log_tail(port):
    serve = Serve("serve", "--demo", "--port", str(port),
                  env={"QWENTUI_ENGINE_OVERRIDES": '{ "--sim-cold-start" = "0.2s", "--sim-crash-after" = "1s" }'})
    try:
        assert serve.proc.wait(20) == 1
        out = serve.output()
        assert "engine crashed: engine exited with code" in out and "last engine log lines" in out
        assert "Scheduler hit an exception" in out and procs.port_free("127.0.0.1", port)
    finally:
        serve.kill()
