"""The guard as a real background process: lock, socket, control API, CLI, kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time

import httpx
import psutil
import pytest

from qwentui.cost.ledger import Ledger, path_for
from qwentui.engine import procs
from qwentui.runtime.client import GuardClient, GuardVersionMismatch, NoGuard
from qwentui.runtime.place import place
from tests.guardproc import detached_guard, end_guard, gone, qwentui, start_guard, wait_for

pytestmark = pytest.mark.slow


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_detached_guard_answers_and_a_second_one_refuses(port):
    with detached_guard(port) as g:
        state = g.state()
        assert state["engine"]["state"] == "ready" and state["engine"]["simulated"]
        assert state["guard"]["pid"] == g.pid and state["version"]
        assert state["idle"]["watchdog"] == "on" and state["cost"]["currency"]
        # the guard is nobody's child and has no terminal
        proc = psutil.Process(g.pid)
        assert proc.ppid() != os.getpid() and os.getsid(g.pid) != os.getsid(0)
        second = qwentui("--demo", "--port", str(port), "serve", "--detach")
        line = _one_line(second.stderr)
        assert second.returncode == 1 and f"pid {g.pid}" in line and str(g.client.socket) in line


def test_socket_and_dir_are_private(port):
    with detached_guard(port, ready=False) as g:
        sock = g.client.socket
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        log = place("sim").log
        assert stat.S_IMODE(log.stat().st_mode) == 0o600


def _as_uid(uid: int, path: str) -> str:
    """Fork, drop to `uid`, connect to the socket and report what happened."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(path)
                answer = s.recv(200).decode(errors="replace").split("\r\n")[0] or "closed"  # before any request
            except OSError as exc:
                answer = f"error {exc.errno}"
            os.write(w, answer.encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as fh:
        return fh.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second uid")
def test_another_uid_is_refused(port):
    with detached_guard(port, ready=False) as g:
        sock = g.client.socket
        assert _as_uid(65534, str(sock)).startswith("error")  # 0600 in a 0700 dir: no way in
        dirs = [sock.parent]
        while dirs[-1] != dirs[-1].parent:
            dirs.append(dirs[-1].parent)
        modes = {d: stat.S_IMODE(d.stat().st_mode) for d in dirs}
        try:
            for d in dirs:
                os.chmod(d, modes[d] | 0o011)
            os.chmod(sock, 0o666)  # even with the file opened up, SO_PEERCRED refuses
            assert _as_uid(65534, str(sock)) == "HTTP/1.1 403 Forbidden"
        finally:
            os.chmod(sock, 0o600)
            for d, mode in modes.items():
                os.chmod(d, mode)
        assert g.client.alive()


def test_kill_9_of_the_guard_takes_the_engine_and_the_next_start_needs_no_cleanup(port):
    g = start_guard(port, "--idle-timeout", "10m")
    try:
        engine = g.engine_pids()
        assert engine
        time.sleep(1.5)
        killed_at = time.time()
        os.kill(g.pid, signal.SIGKILL)
        wait_for(lambda: gone([g.pid] + engine), timeout=10, what="guard and engine gone (PDEATHSIG)")
        assert procs.port_free("127.0.0.1", port)
        assert g.client.socket.exists()  # stale socket and lock left behind
        g2 = start_guard(port)
        try:
            assert g2.pid != g.pid and g2.state()["engine"]["state"] == "ready"
        finally:
            end_guard(g2)
        rows = Ledger(path_for("sim"), read_only=True).sessions()
        first = rows[0]
        beat = 30.0  # cost.heartbeat default: at most one heartbeat lost
        assert first.stop_reason and killed_at - first.end <= beat + 2
    finally:
        end_guard(g)


def test_a_socket_path_that_is_not_ours_is_refused(port):
    where = place("sim")
    where.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    where.socket.write_text("not a socket")
    done = qwentui("--demo", "--port", str(port), "serve", "--detach")
    line = _one_line(done.stderr)
    assert done.returncode == 2 and "not a qwentui guard socket" in line and "not a socket" in line
    assert where.socket.read_text() == "not a socket"


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["stop"], ["snooze"], ["snooze", "5m"]])
def test_cli_without_a_guard_exits_3_with_one_line(argv):
    done = qwentui(*argv, "--demo")
    assert done.returncode == 3 and "no guard runs" in _one_line(done.stderr) and not done.stdout


@pytest.mark.parametrize("value", ["0", "-5m", "soon", "5x", "inf", "nan", "8d", ""])
def test_bad_snooze_durations_exit_2(value):
    done = qwentui("snooze", value, "--demo")
    line = _one_line(done.stderr)
    assert done.returncode == 2 and ("DURATION" in line or "unrecognized arguments: -5m" in line)


def test_status_snooze_and_stop_end_everything(port):
    g = start_guard(port, "--idle-timeout", "2m")
    try:
        engine = g.engine_pids()
        first = json.loads(qwentui("status", "--json", "--demo").stdout)["idle"]["seconds_left"]
        time.sleep(2.2)
        second = json.loads(qwentui("status", "--json", "--demo").stdout)["idle"]["seconds_left"]
        assert first is not None and second is not None and second < first
        text = qwentui("status", "--demo")
        assert text.returncode == 0 and "engine  : ready" in text.stdout and "[SIMULATED]" in text.stdout
        snoozed = qwentui("snooze", "30m", "--demo")
        assert snoozed.returncode == 0 and "snoozed" in snoozed.stdout
        after = json.loads(qwentui("status", "--json", "--demo").stdout)["idle"]
        assert after["seconds_left"] > 30 * 60 and after["state"] == "snoozed"
        stopped = qwentui("stop", "--demo")
        assert stopped.returncode == 0, stopped.stderr
        assert gone([g.pid] + engine) and procs.port_free("127.0.0.1", port)
        assert not g.client.socket.exists()
        assert qwentui("status", "--demo").returncode == 3
        rows = Ledger(path_for("sim"), read_only=True).sessions()
        assert rows[-1].stop_reason == "user" and not rows[-1].open
    finally:
        end_guard(g)


def test_control_api_over_the_socket(port):
    with detached_guard(port, "--idle-timeout", "5m") as g:
        transport = httpx.HTTPTransport(uds=str(g.client.socket))
        with httpx.Client(transport=transport, base_url="http://guard") as http:
            assert http.post("/idle/snooze", json={"seconds": "x"}).status_code == 409
            assert http.post("/idle/snooze", content=b"{not json").status_code == 400
            assert http.post("/idle/disable").json()["ok"]
            assert g.state()["idle"]["state"] == "disabled"
            assert http.post("/idle/enable").json()["ok"]
            assert http.post("/activity", json={"source": "batch", "seconds": 30}).json()["ok"]
            wait_for(lambda: g.state()["idle"]["alive"] == "batch running", what="batch lease seen")
            assert http.post("/activity", json={"source": "batch", "seconds": 0}).json()["ok"]
            log = http.get("/log", params={"lines": 5}).json()
            assert len(log["lines"]) == 5 and log["path"].endswith(f"engine-{port}.log")
            assert http.get("/connect").json()["base_url"] == f"http://127.0.0.1:{port}"
            with http.stream("GET", "/events") as events:
                first = next(events.iter_lines())
                assert first == "event: state"
            assert http.post("/engine/stop").json()["ok"]
            wait_for(lambda: g.state()["engine"]["state"] == "stopped", what="engine stopped")
            assert g.client.alive()  # a detached guard outlives its engine
            assert http.post("/engine/start").json()["ok"]
            wait_for(lambda: g.state()["engine"]["state"] == "ready", what="engine ready again")


def test_a_guard_of_another_version_is_refused_politely(port, monkeypatch):
    with detached_guard(port, ready=False) as g:
        monkeypatch.setattr("qwentui.runtime.client.__version__", "0.0.1")
        with pytest.raises(GuardVersionMismatch) as err:
            GuardClient(kind="sim").state()
        assert "the running guard is qwentui" in err.value.message and "this is qwentui 0.0.1" in err.value.message
        assert GuardClient(kind="sim").stop_guard()["pid"] == g.pid  # stop works across versions


def test_systemd_unit():
    done = qwentui("serve", "--print-systemd-unit", "system", "--idle-timeout", "20m")
    text = done.stdout
    assert done.returncode == 0 and "Restart=on-failure" in text and "KillMode=mixed" in text
    assert "serve --idle-timeout 20m" in text and "WantedBy=multi-user.target" in text and "User=" in text
    assert "--detach" not in text


def test_no_guard_client_error():
    with pytest.raises(NoGuard):
        GuardClient(kind="sim").state()


def test_batch_uses_the_guards_engine_and_holds_it_alive(port, tmp_path):
    with detached_guard(port, "--idle-timeout", "5m") as g:
        engine = g.state()["engine"]["pid"]
        src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        src.write_text("".join(json.dumps({"id": i, "prompt": f"hi {i}", "max_tokens": 8}) + "\n" for i in range(3)))
        done = qwentui("batch", str(src), "-o", str(out), "--demo", "--port", str(port), "--then", "keep",
                       timeout=120)
        assert done.returncode == 0, done.stderr
        assert "using the guard's engine" in done.stderr + done.stdout
        assert len(out.read_text().splitlines()) == 3
        state = g.state()
        assert state["engine"]["state"] == "ready" and state["engine"]["pid"] == engine  # left running
        assert state["idle"]["last_activity"] in ("batch", "API request")


def test_place_falls_back_for_long_or_read_only_state_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ("x" * 90)))
    long = place("sim")
    assert long.dir != tmp_path and len(str(long.socket)) <= 100 and long.name == "guard-demo"
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))  # under a file: nothing can be created
    ro = place("sglang")
    assert not str(ro.socket).startswith(str(blocker)) and not str(ro.log).startswith(str(blocker))
    assert place("sglang") == ro and place("sim").dir == ro.dir  # deterministic: clients find it
