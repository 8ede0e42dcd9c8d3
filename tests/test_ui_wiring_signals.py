"""A real `qwentui --demo` on a pty, as over SSH: the console is a client of the guard.

SIGTERM, SIGHUP, SIGINT sent with kill, kill -9 and a closed pty end the console only; the guard
and its engine go on, and the guard's idle stop still fires on time (the SSH-drop test).
A closed pty never hangs the console (issue 16 #1): 30 closes, 0 hangs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psutil
import pytest

from bench.common import PtyProcess, app_env, qwentui_argv
from qwentui.cost.ledger import Ledger
from tests.conftest import free_port
from tests.guardproc import gone, wait_for

pytestmark = pytest.mark.slow
FAST = '["--sim-cold-start", "0.2s", "--sim-tokens-per-s", "3000"]'


def _guard(env: dict) -> dict | None:
    """The guard's /state for the console's state dir (None when none answers)."""
    from qwentui.runtime.client import GuardClient

    assert os.environ["XDG_STATE_HOME"] == env["XDG_STATE_HOME"]  # conftest and app_env agree
    try:
        return GuardClient(kind="sim").state()
    except Exception:  # noqa: BLE001 - no guard (yet / any more)
        return None


def _console(tmp_path, port: int, *extra: str, **env_extra: str) -> tuple[PtyProcess, dict]:
    env = app_env(tmp_path / "xdg", QWENTUI_ENGINE_STOP_GRACE="2s", QWENTUI_ENGINE_EXTRA_ARGS=FAST, **env_extra)
    return PtyProcess([*qwentui_argv(), "--demo", "--port", str(port), *extra], env, cols=100, rows=30), env


def _hang_up(app: PtyProcess) -> None:
    """The SSH session drops: the terminal goes away, the kernel sends SIGHUP."""
    os.close(app.master)
    app.master = os.open(os.devnull, os.O_RDONLY)  # for app.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL, "hangup"],
                         ids=["term", "hup", "int", "kill-9", "pty-closed"])
def test_signals_end_the_console_and_leave_the_guard_running(sig, tmp_path):
    port = free_port()
    app, env = _console(tmp_path, port)
    try:
        assert app.wait_for(b"READY", 30) is not None, app.output()[-2000:]
        state = _guard(env)
        assert state and state["engine"]["state"] == "ready"
        engine, guard = state["engine"]["pid"], state["guard"]["pid"]
        assert guard not in [p.pid for p in psutil.Process(app.proc.pid).children(recursive=True)]
        if sig == "hangup":
            _hang_up(app)
        else:
            os.kill(app.proc.pid, sig)
        app.proc.wait(10)  # the console ends (never hangs) ...
        time.sleep(0.5)
        after = _guard(env)  # ... and the guard, its engine and its ledger row go on
        assert after and after["engine"]["pid"] == engine and after["guard"]["pid"] == guard
        assert after["engine"]["state"] == "ready" and psutil.pid_exists(engine)
    finally:
        app.close(kill=True)


def test_ssh_drop_the_guard_stops_the_idle_engine_and_powers_off_once(tmp_path):
    port = free_port()
    marker = tmp_path / "poweroff-ran"
    config = tmp_path / "config.toml"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    config.write_text(f'[idle]\ntimeout = "6s"\nwarn_before = "2s"\naction = "poweroff"\n'
                      f'poweroff_command = {json.dumps(command)}\n')
    timeout, grace = 6.0, 2.0
    app, env = _console(tmp_path, port, "--config", str(config))
    try:
        assert app.wait_for(b"READY", 30) is not None, app.output()[-2000:]
        state = _guard(env)
        engine = [state["engine"]["pid"]] + [c.pid for c in psutil.Process(state["engine"]["pid"]).children(True)]
        guard = state["guard"]["pid"]
        ready_at = time.monotonic() - (state["idle"]["seconds_idle"] or 0)
        _hang_up(app)
        app.proc.wait(10)
        assert psutil.pid_exists(guard) and not gone([guard])  # the console is gone, the guard is not
        wait_for(lambda: gone(engine), timeout=timeout + grace + 2 + 5, what="engine gone")
        took = time.monotonic() - ready_at
        assert took <= timeout + grace + 2 + 1, took  # +1: the sample tick
        from qwentui.engine import procs

        wait_for(lambda: procs.port_free("127.0.0.1", port), timeout=2, what="port free")
        wait_for(lambda: marker.exists(), timeout=10, what="poweroff marker")
        wait_for(lambda: gone([guard]), timeout=10, what="guard exits after powering off")
        assert marker.read_text() == "x"  # exactly once
        ledger_path = next((tmp_path / "xdg" / "state").rglob("ledger-sim.sqlite3"))
        with Ledger(ledger_path, read_only=True) as ledger:
            rows = ledger.sessions()
        assert [r.stop_reason for r in rows] == ["idle"] and not rows[0].open
    finally:
        app.close(kill=True)


@pytest.mark.timeout(480)
def test_a_closed_pty_never_hangs_the_console_30_times(tmp_path):
    """Issue 16 #1: chat, ctrl+q (the quit dialog is up), then the terminal dies; 30 runs, one guard."""
    port = free_port()
    hangs, closes, t0 = [], 0, time.monotonic()
    for i in range(30):
        app, env = _console(tmp_path, port)
        try:
            if app.wait_for(b"READY", 40) is None:
                raise AssertionError(app.output()[-2000:])
            if i % 3 == 0:
                app.write(b"hi\r")
                time.sleep(0.3)
            app.write(b"\x11")  # ctrl+q: the quit dialog opens over a running engine
            time.sleep(0.1 * (i % 4))
            _hang_up(app)
            closes += 1
            try:
                app.proc.wait(10)
            except Exception:  # noqa: BLE001 - a hang: count it, then clean up
                hangs.append(i)
        finally:
            app.close(kill=True)
    assert closes == 30 and hangs == []
    print(f"30 pty closes, 0 hangs, {time.monotonic() - t0:.0f}s")
    state = _guard(env)
    assert state and state["engine"]["state"] == "ready"  # one guard served all 30 consoles
