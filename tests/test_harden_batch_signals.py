"""Issue 16 item 7: SIGHUP (a dropped SSH session) stops a batch like SIGTERM: "interrupted",
the ledger row closed with "signal", every finished answer flushed to OUT, the engine stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from qwentui.cost.ledger import Ledger
from tests import cliproc
from tests.conftest import free_port


def slow_config(tmp_path, port: int) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\nkind = "sim"\nport = {port}\nstop_grace = "3s"\n'
                    'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 50}\n'
                    '[cost]\nprice_per_hour = 1.0\n')
    return str(path)


def prompts(tmp_path, n: int = 30) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}", "max_tokens": 32}) + "\n"
                            for i in range(n)))
    return str(path)


def wait_lines(out, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (not out.exists() or out.read_text().count("\n") < n) and time.monotonic() < deadline:
        time.sleep(0.05)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def last_session(tmp_path):
    path = tmp_path / "xdg" / "state" / "qwentui" / "ledger-sim.sqlite3"
    with Ledger(path, read_only=True) as ledger:
        return ledger.sessions()[-1]


def assert_clean_stop(tmp_path, out, port) -> None:
    records = [json.loads(line) for line in out.read_text().splitlines()]  # no torn line
    assert 3 <= len(records) < 30 and all("content" in r for r in records)
    assert port_is_free(port)
    row = last_session(tmp_path)
    assert not row.open and row.stop_reason == "signal"


def test_sighup_is_a_clean_stop_like_sigterm(tmp_path):
    port, out = free_port(), tmp_path / "out.jsonl"
    proc = cliproc.start(tmp_path, "--config", slow_config(tmp_path, port), "batch", prompts(tmp_path), "-o",
                         str(out), "--concurrency", "2")
    try:
        wait_lines(out, 3)
        proc.signal(signal.SIGHUP)
        assert proc.finish() == 130, proc.stderr()
    finally:
        proc.kill()
    assert "interrupted:" in proc.stderr() and "Traceback" not in proc.stderr()
    assert_clean_stop(tmp_path, out, port)


def test_sighup_with_the_terminal_gone_still_stops_cleanly(tmp_path):
    """After a hang-up every write to the terminal fails; the stop must not depend on it."""
    port, out = free_port(), tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "qwentui", "--config", slow_config(tmp_path, port), "batch", prompts(tmp_path),
            "-o", str(out), "--concurrency", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_lines(out, 3)
        proc.stdout.close()
        proc.stderr.close()  # the terminal is gone: EPIPE on every write from now on
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert_clean_stop(tmp_path, out, port)
