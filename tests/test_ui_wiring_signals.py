"""A real `qwentui --demo` on a pty: SIGTERM, SIGHUP (dropped SSH) and a SIGINT sent with kill
quit cleanly — no engine process left, the port free, the ledger row closed with "signal"."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest

from bench.common import PtyProcess, app_env, qwentui_argv
from qwentui.cost.ledger import Ledger
from tests.conftest import free_port


def _engine_pids(pid: int) -> list[int]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k.pid for k in kids if "qwentui.sim" in " ".join(_cmdline(k))]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _port_free(port: int) -> bool:
    """A server could bind it again (SO_REUSEADDR, like uvicorn: TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, "hangup"],
                         ids=["term", "hup", "int", "pty-closed"])
def test_signal_stops_the_engine_and_closes_the_ledger_row(sig, tmp_path):
    port = free_port()
    env = app_env(tmp_path / "xdg", QWENTUI_ENGINE_STOP_GRACE="2s",
                  QWENTUI_ENGINE_EXTRA_ARGS='["--sim-cold-start", "0.2s"]')
    app = PtyProcess([*qwentui_argv(), "--demo", "--port", str(port)], env, cols=100, rows=30)
    try:
        assert app.wait_for(b"READY", 30) is not None, app.output()[-2000:]
        deadline = time.monotonic() + 10
        while not (engines := _engine_pids(app.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engines, "no simulator child found"
        if sig == "hangup":  # the SSH session drops: the terminal goes away, the kernel sends SIGHUP
            os.close(app.master)
            app.master = os.open(os.devnull, os.O_RDONLY)  # for app.close()
        else:
            os.kill(app.proc.pid, sig)
        app.proc.wait(20)
        deadline = time.monotonic() + 3
        while any(psutil.pid_exists(p) for p in engines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in engines if psutil.pid_exists(p)], "engine outlived the console"
        assert _port_free(port)
        ledger_path = next((tmp_path / "xdg" / "state").rglob("ledger-sim.sqlite3"))
        with Ledger(ledger_path, read_only=True) as ledger:
            rows = ledger.sessions()
        assert [r.stop_reason for r in rows] == ["signal"] and not rows[0].open
    finally:
        app.close(kill=True)
