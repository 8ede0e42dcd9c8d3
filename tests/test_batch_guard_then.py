"""`qwentui batch --then stop|keep|poweroff` while a guard runs the engine: the guard stops
its engine (and closes its ledger row, and powers off) itself, like `job && shutdown -h now`."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest

from qwentui.batch.job import BatchJob, EngineHandle, JobOptions
from qwentui.config import Config
from qwentui.cost.ledger import Ledger, path_for
from qwentui.paths import config_file
from qwentui.runtime.client import GuardClient
from tests.guardproc import detached_guard, gone, qwentui, wait_for

pytestmark = pytest.mark.slow


def _marker_config(tmp_path, command: list[str] | None = None):
    marker = tmp_path / "MARKER"
    argv = command or ["sh", "-c", f"echo ran >> {marker}"]
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[idle]\npoweroff_command = {json.dumps(argv)}\n")
    return marker


def _prompts(tmp_path, n: int = 3):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "prompt": f"hi {i}", "max_tokens": 8}) + "\n" for i in range(n)))
    return src


def _batch(tmp_path, port, then: str, *extra: str):
    out = tmp_path / f"out-{then}.jsonl"
    return qwentui("batch", str(_prompts(tmp_path)), "-o", str(out), "--demo", "--port", str(port),
                   "--then", then, "--overwrite", *extra, timeout=180)


def _ok_batch(tmp_path, port, then: str, *extra: str):
    done = _batch(tmp_path, port, then, *extra)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _last_row():
    return Ledger(path_for("sim"), read_only=True).sessions()[-1]


def _closed_by_the_batch():
    row = _last_row()
    assert not row.open and row.stop_reason == "batch-done", row
    return row


def test_then_poweroff_asks_the_guard_to_stop_close_and_power_off_once(port, tmp_path):
    marker = _marker_config(tmp_path)
    with detached_guard(port, "--idle-timeout", "5m") as g:
        engine = g.engine_pids()
        err = _ok_batch(tmp_path, port, "poweroff")
        assert marker.read_text() == "ran\n"  # exactly once
        lines = [line for line in err.splitlines() if "guard" in line and "power" in line]
        assert len(lines) == 1 and "power off requested: sh -c" in lines[0], err
        _closed_by_the_batch()
        wait_for(lambda: gone(engine), timeout=10, what="engine processes gone")
        assert g.state()["engine"]["state"] == "stopped"


def test_then_poweroff_dry_run_through_the_guard_runs_nothing(port, tmp_path):
    marker = _marker_config(tmp_path)
    with detached_guard(port, "--idle-timeout", "5m") as g:
        err = _ok_batch(tmp_path, port, "poweroff", "--dry-run")
        assert not marker.exists() and "dry run: would run sh -c" in err
        closed = _closed_by_the_batch()
        assert g.state()["engine"]["state"] == "stopped"
        assert g.client.command("engine/start")["ok"]  # a restart opens a new row in the reopened ledger
        wait_for(lambda: g.state()["engine"]["state"] == "ready", what="engine ready again")
        wait_for(lambda: _last_row().id > closed.id and _last_row().open, what="a new ledger row")


def test_then_poweroff_that_fails_in_the_guard_says_so_and_exits_1(port, tmp_path):
    _marker_config(tmp_path, ["sh", "-c", "echo nope; exit 3"])
    with detached_guard(port, "--idle-timeout", "5m"):
        done = _batch(tmp_path, port, "poweroff")
        assert done.returncode == 1, done.stderr
        lines = [line for line in done.stderr.splitlines() if "could not power off" in line]
        assert len(lines) == 1 and "exit 3" in lines[0] and "nope" in lines[0], done.stderr
        _closed_by_the_batch()  # the row is final before the command runs


def test_then_stop_stops_the_guards_engine_and_the_guard_stays(port, tmp_path):
    marker = _marker_config(tmp_path)
    with detached_guard(port, "--idle-timeout", "5m") as g:
        engine = g.engine_pids()
        err = _ok_batch(tmp_path, port, "stop")
        assert "the guard's engine stopped (batch-done); the guard keeps running" in err, err
        assert g.state()["engine"]["state"] == "stopped" and gone(engine)
        _closed_by_the_batch()
        status = qwentui("status", "--demo")
        assert status.returncode == 0 and "engine  : stopped" in status.stdout, status.stdout
        assert not marker.exists()
        # the engine is already stopped: a second batch starts it again through the guard, then stops it
        again = _batch(tmp_path, port, "stop")
        assert again.returncode == 0 and "the guard's engine stopped" in again.stderr, again.stderr


def test_then_keep_leaves_the_guards_engine_and_the_new_api_refuses_bad_bodies(port, tmp_path):
    _marker_config(tmp_path)
    with detached_guard(port, "--idle-timeout", "5m") as g:
        engine = g.state()["engine"]["pid"]
        _ok_batch(tmp_path, port, "keep")
        state = g.state()
        assert state["engine"]["state"] == "ready" and state["engine"]["pid"] == engine
        assert state["idle"]["alive"] != "batch running"  # the lease is released
        transport = httpx.HTTPTransport(uds=str(g.client.socket))
        with httpx.Client(transport=transport, base_url="http://guard") as http:
            for body, error in (({"reason": "bored"}, "reason must be one of"),
                                ({"command": "shutdown"}, "command must be a non-empty list of strings"),
                                ({"command": []}, "command must be a non-empty list of strings"),
                                ({"dry_run": "yes"}, "dry_run must be true or false"),
                                ({"command": ["echo", "$QWENTUI_TEST_UNSET"]}, "which is not set")):
                answer = http.post("/guard/poweroff", json=body)
                assert answer.status_code == 409 and error in answer.json()["error"], answer.text
            answer = http.post("/engine/stop", json={"reason": "bored"})
            assert answer.status_code == 409 and "reason must be one of" in answer.json()["error"]
        assert g.state()["engine"]["state"] == "ready"  # nothing of that stopped anything


class _Guard:
    """Records what a batch asks of the guard (the Ctrl+C rule: nothing)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop_engine(self, *a, **kw):
        self.calls.append("stop")

    def power_off(self, *a, **kw):
        self.calls.append("poweroff")


def _result(**kw):
    from qwentui.batch.runner import BatchResult

    fields = dict(total=2, skipped=0, ok=2, failed=0, cached=0, not_done=0, prompt_tokens=1,
                  completion_tokens=1, reasoning_tokens=0, wall_s=1.0, latency_sum_s=1.0, retries=0)
    return BatchResult(**{**fields, **kw})


def _finish(tmp_path, then: str, guard, capsys, **result):
    from qwentui.batch.job import CostBook

    never_the_real_one = ["sh", "-c", f"echo ran >> {tmp_path / 'MARKER'}"]
    cfg = Config()
    cfg = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, poweroff_command=never_the_real_one))
    job = BatchJob(cfg, JobOptions(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", then=then),
                   tty=False)
    engine = EngineHandle("http://127.0.0.1:1", "", "m", "guard", owned=False, guard=guard)

    async def go():
        return await job._finish(_result(**result), engine, CostBook(cfg, job.say))

    code = asyncio.run(go())
    return code, capsys.readouterr().err


@pytest.mark.parametrize("then", ["stop", "poweroff", "keep"])
def test_after_ctrl_c_the_guard_is_asked_nothing(tmp_path, capsys, then):
    guard = _Guard()
    code, _ = _finish(tmp_path, then, guard, capsys, ok=1, not_done=1, interrupted=True)
    assert code == 130 and guard.calls == []


@pytest.mark.parametrize("then", ["stop", "poweroff"])
def test_a_guard_that_is_gone_is_one_line_and_exit_1(tmp_path, capsys, then):
    guard = GuardClient(tmp_path / "no-guard.sock")
    code, err = _finish(tmp_path, then, guard, capsys)
    lines = [line for line in err.splitlines() if "guard" in line]
    assert code == 1 and len(lines) == 1, err
    assert "no guard runs" in lines[0]
    if then == "poweroff":
        assert lines[0].startswith("qwentui: the box was not powered off: no guard runs")
    else:
        assert lines[0].startswith("qwentui: the guard's engine was not stopped: no guard runs")
    assert not (tmp_path / "MARKER").exists()
