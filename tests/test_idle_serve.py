"""`qwentui serve` with the idle watchdog, end to end against the simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qwentui import cli
from qwentui.cost.ledger import Ledger, path_for
from qwentui.sim.launch import DRAIN_POLL_S
from tests.conftest import free_port

MODEL = "Qwen/Qwen3-1.7B"


class Serve:
    """`python -m qwentui serve ...` with its stdout lines timestamped as they arrive."""

    def __init__(self, config: Path, *args: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "qwentui", "--config", str(config), "serve", "--engine", "sim",
                "--port", str(self.port), "--stop-grace", "10s", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.exited_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
        self.proc.wait()
        self.exited_at = time.monotonic()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for(self, text: str, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} in:\n{self.output()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not exit within {timeout}s:\n{self.output()}") from None
        deadline = time.monotonic() + 2
        while self.exited_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return code

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# a clean stop: SGLang's 5 s SIGTERM tick, the scheduler's ~1 s exit, process start/exit slack
STOP_S = DRAIN_POLL_S + 1.0 + 2.0


def write_config(tmp_path: Path, extra: str = "", tokens_per_s: int = 2000) -> Path:
    # Gauges move every --decode-log-interval decode steps, as in SGLang: at 25 tok/s the
    # default 40 steps would hide a stream from the 1 s idle timeout these tests use.
    file = tmp_path / "config.toml"
    file.write_text('[engine]\noverrides = {"--sim-cold-start" = "0.2s", "--decode-log-interval" = 2, '
                    f'"--sim-tokens-per-s" = "{tokens_per_s}"}}\n{extra}')
    return file


@pytest.fixture
def serves():
    started: list[Serve] = []
    yield started
    for s in started:
        s.kill()


def last_session():
    with Ledger(path_for("sim"), read_only=True) as ledger:
        return ledger.sessions()[-1]


@pytest.mark.slow
def test_stops_by_itself_within_timeout_plus_grace(tmp_path, serves):
    serve = Serve(write_config(tmp_path), "--idle-timeout", "3s")
    serves.append(serve)
    ready = serve.wait_for("engine ready in")
    assert serve.wait_exit() == 0
    took = serve.exited_at - ready
    assert 3.0 <= took <= 3 + STOP_S, serve.output()
    out = serve.output()
    assert "idle: stop the engine after 3s without activity (warning 1s before)" in out
    assert "idle: no activity for 0:02 — stopping the engine in 0:01 (Ctrl+C stops now)" in out
    assert "idle: engine stopped (idle)" in out
    row = last_session()
    assert row.stop_reason == "idle" and row.engine_kind == "sim" and not row.open


@pytest.mark.slow
def test_external_streaming_client_keeps_it_alive(tmp_path, serves):
    openai = pytest.importorskip("openai")
    serve = Serve(write_config(tmp_path, tokens_per_s=25), "--idle-timeout", "1s")
    serves.append(serve)
    serve.wait_for("engine ready in")
    client = openai.OpenAI(base_url=serve.base_url, api_key="none", max_retries=0)
    t0 = time.monotonic()
    stream = client.chat.completions.create(model=MODEL, stream=True, max_tokens=80,
                                            messages=[{"role": "user", "content": "Explain GPUs"}])
    chunks = sum(1 for _ in stream)
    streamed = time.monotonic() - t0
    ended = time.monotonic()
    assert streamed > 2 * 1, f"the stream must outlast the idle timeout ({streamed:.1f}s)"
    assert chunks > 20 and serve.proc.poll() is None
    assert "stopping the engine" not in serve.output()
    assert serve.wait_exit() == 0
    assert serve.exited_at - ended <= 1 + STOP_S, serve.output()
    assert last_session().stop_reason == "idle"


@pytest.mark.slow
def test_poweroff_runs_once_after_the_ledger_row_is_closed(tmp_path, serves):
    marker = tmp_path / "marker"
    check = tmp_path / "poweroff.py"
    check.write_text(
        "import sys\nfrom qwentui.cost.ledger import Ledger, path_for\n"
        "with Ledger(path_for('sim'), read_only=True) as l:\n    row = l.sessions()[-1]\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(f'{row.stop_reason} {\"open\" if row.open else \"closed\"}\\n')\n")
    extra = f'[idle]\npoweroff_command = ["{sys.executable}", "{check}", "{marker}"]\n'
    serve = Serve(write_config(tmp_path, extra), "--idle-timeout", "1s", "--idle-action", "poweroff")
    serves.append(serve)
    assert serve.wait_exit() == 0, serve.output()
    assert marker.read_text() == "idle closed\n"
    out = serve.output()
    assert "stopping the engine and powering off..." in out
    assert f"idle: power off requested: {sys.executable} {check}" in out


@pytest.mark.slow
def test_failing_poweroff_exits_nonzero_with_the_engine_stopped(tmp_path, serves):
    extra = '[idle]\npoweroff_command = ["sh", "-c", "echo must be root >&2; exit 3"]\n'
    serve = Serve(write_config(tmp_path, extra), "--idle-timeout", "1s", "--idle-action", "poweroff")
    serves.append(serve)
    assert serve.wait_exit() == 1
    out = serve.output()
    assert "idle: engine stopped; sh -c echo must be root >&2; exit 3 failed (exit 3): must be root" in out
    assert "hint: qwentui runs as" in out and "Traceback" not in out
    assert last_session().stop_reason == "idle"


@pytest.mark.parametrize("value, message", [
    ("0", "--idle-timeout must be greater than zero"),
    ("-5m", "--idle-timeout must be a duration"),
    ("abc", "--idle-timeout must be a duration"),
])
def test_bad_idle_timeout_exits_2(capsys, value, message):
    assert cli.main(["serve", "--engine", "sim", "--port", str(free_port()), f"--idle-timeout={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qwentui: error: ") and message in err and err.count("\n") == 1


def test_bad_idle_action_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--engine", "sim", "--idle-action", "reboot"])
    assert exc.value.code == 2
    assert "invalid choice: 'reboot'" in capsys.readouterr().err
