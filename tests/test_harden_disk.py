"""Issue 16 item 4: a full disk. The engine log never raises or floods, a stop always
signals the engine, and a failed ledger write is reported once."""

from __future__ import annotations

import errno
import os

import pytest

from qwentui.engine.logsink import LogSink, Masker
from tests.tmpfs import fill, small_tmpfs


def test_log_write_on_a_full_disk_reports_once_and_keeps_the_tail(tmp_path, monkeypatch):
    sink = LogSink(tmp_path / "engine.log", Masker(["sk-secret-0123456789"]))
    real_write = os.write

    def full(fd, data):
        if fd == sink._fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    for n in range(300):
        sink.write(f"line {n} api_key=sk-secret-0123456789")  # must never raise
    notices = [line for line in sink.lines() if "cannot write the engine log" in line]
    assert len(notices) == 1 and "No space left on device" in notices[0]
    assert sink.error and "No space left on device" in sink.error
    assert sink.lines()[-1].startswith("line 299") and "sk-secret-0123456789" not in sink.lines()[-1]
    sink.close()


def test_log_on_a_real_full_tmpfs(tmp_path):
    with small_tmpfs(tmp_path / "disk", size="256k") as disk:
        sink = LogSink(disk / "log" / "engine.log", Masker([]), tail=5000, max_bytes=64 * 1024, backups=2)
        sink.write("before the disk filled")
        fill(disk)
        for n in range(2000):
            sink.write(f"engine line {n} " + "x" * 100)  # rotation and appends hit ENOSPC
        assert sum("cannot write the engine log" in line for line in sink.lines()) == 1
        sink.close()


def test_log_dir_that_cannot_be_created_does_not_raise(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    sink = LogSink(tmp_path / "file" / "engine.log", Masker([]))
    sink.write("still kept in memory")
    assert sink.error and sink.lines()[-1] == "still kept in memory"


async def test_stop_signals_the_engine_even_when_the_log_cannot_be_written(tmp_path, monkeypatch):
    """The old stop path raised in its first log line, before SIGTERM (the engine then died
    by PDEATHSIG SIGKILL and the ledger row stayed open)."""
    from qwentui import config
    from qwentui.engine import Supervisor
    from tests.conftest import free_port

    cfg = config.from_mapping({"engine": {"kind": "sim", "port": free_port(),
                                          "overrides": {"--sim-cold-start": "0.1s"}}})
    sup = Supervisor(cfg)
    await sup.start()
    try:
        real_write = os.write

        def full(fd, data):
            if fd == sup._sink._fd:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", full)
        await sup.stop("signal")
    finally:
        monkeypatch.undo()
        await sup.stop("user")
    st = sup.status
    assert st.state.value == "stopped" and st.stop_reason == "signal"
    assert st.exit_code == 0  # drained after SIGTERM, not SIGKILLed
    assert sum("cannot write the engine log" in line for line in sup.log_lines()) == 1


class FullLedger:
    """A Ledger whose writes fail like SQLite on a full disk, after the session opened."""

    def __new__(cls):
        from qwentui.cost.ledger import Ledger, LedgerError

        class _Full(Ledger):
            full = False

            def _write(self, conn=None):
                if self.full:
                    raise LedgerError(f"cannot use ledger {self.path}: database or disk is full")
                return super()._write(conn)

        return _Full()


async def test_serve_reports_a_failing_ledger_write_once():
    import dataclasses

    from qwentui.config import Config, CostConfig
    from qwentui.runtime.headless import ServeWatch
    from tests.test_idle_serve_glue import Clock, FakeSession, run_ticks

    cfg = dataclasses.replace(Config(), cost=dataclasses.replace(CostConfig(), heartbeat=1.0))
    session, clock = FakeSession(cfg), Clock()
    ledger = FullLedger()

    async def scrape():
        from qwentui.idle.watchdog import MetricsSample

        return MetricsSample(requests_total=0)

    watch = ServeWatch(session, cfg.idle, clock=clock, scrape=scrape, ledger=ledger)
    await run_ticks(session, watch, clock, 2)
    ledger.full = True
    await run_ticks(session, watch, clock, 20)  # 20 failed heartbeats
    session.stop_reason = "signal"
    await watch.on_exit(session)  # and a failed close
    warnings = [line for line in session.lines if "cost ledger write failed" in line]
    assert warnings == [f"warning: cost ledger write failed: cannot use ledger {ledger.path}: database or "
                        "disk is full; this session may be recorded incompletely"]


def test_sigterm_on_a_full_disk_stops_the_engine_cleanly(tmp_path):
    """`qwentui serve` with its state dir (ledger, engine log) on a disk that fills up."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import free_port

    port = free_port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[engine]\nkind = "sim"\nport = {port}\nstop_grace = "5s"\n'
                   'overrides = {"--sim-cold-start" = "0.2s"}\n[cost]\nprice_per_hour = 1.0\nheartbeat = "1s"\n')
    with small_tmpfs(tmp_path / "state", size="1m") as disk:
        env = {**os.environ, "XDG_STATE_HOME": str(disk), "PYTHONUNBUFFERED": "1"}
        out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "qwentui", "--config", str(cfg), "serve"],
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 30
            while "Ctrl+C to" not in out_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            fill(disk)
            for log in (disk / "qwentui" / "log").glob("engine-*.log"):
                fill_last_page(log)  # a full disk: not even the log's last page has room
            time.sleep(2.5)  # heartbeats on the full disk
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stdout, stderr = out_path.read_text(), err_path.read_text()
        assert proc.returncode == 0, stdout + stderr
        assert "Traceback" not in stdout + stderr
        assert "engine stopped in" in stdout and "(exit code 0)" in stdout  # SIGTERM reached it
        assert stdout.count("cost ledger write failed") <= 1
        from qwentui.cost.ledger import Ledger

        with Ledger(disk / "qwentui" / "ledger-sim.sqlite3", read_only=True) as ledger:
            row = ledger.sessions()[-1]
        assert row.stop_reason == "signal" or "cost ledger write failed" in stdout  # closed, or said so


def fill_last_page(path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"~")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_batch_output_on_a_full_disk_stops_cleanly_and_resume_finishes(tmp_path, capsys):
    import json
    import subprocess

    from qwentui.cli import main
    from qwentui.cost.ledger import Ledger, path_for
    from tests.conftest import free_port

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                   'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 4000}\n')
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "prompt": "q", "max_tokens": 64}) + "\n" for i in range(150)))
    with small_tmpfs(tmp_path / "disk", size="48k") as disk:
        out = disk / "out.jsonl"
        code = main(["--config", str(cfg), "batch", str(src), "-o", str(out), "--concurrency", "8"])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and "internal error" not in err, err
        errors = [line for line in err.splitlines() if line.startswith("qwentui: error:")]
        assert errors == [f"qwentui: error: cannot write {out}: No space left on device; the answers before "
                          "this one are saved: make room, then continue with --resume"]
        assert not (disk / ".out.jsonl.lock").exists()
        [row] = Ledger(path_for("sim"), read_only=True).sessions()
        assert not row.open  # the engine was stopped and the row closed
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        assert main(["--config", str(cfg), "batch", str(src), "-o", str(out), "--resume"]) == 0
        ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        assert sorted(ids) == list(range(150))
