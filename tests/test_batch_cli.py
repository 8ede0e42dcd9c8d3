"""`qwentui batch` end to end against the simulator: engine lifecycle, bad input, resume, cache, then."""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest

from qwentui.cli import main
from tests.conftest import free_port
from tests.simproc import running_sim
from tests.waits import poll_until

FAST = '"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000'


def config(tmp_path, port: int, overrides: str = FAST, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f"[engine]\nkind = \"sim\"\nport = {port}\noverrides = {{{overrides}}}\n"
                    f"stop_grace = \"10s\"\n[cost]\nprice_per_hour = 1.8\n{extra}")
    return str(path)


def prompts(tmp_path, n: int, *, name: str = "in.jsonl", max_tokens: int = 16, extra: list[str] = ()) -> str:
    path = tmp_path / name
    lines = [json.dumps({"id": f"q{i}", "prompt": f"question {i}", "max_tokens": max_tokens}) for i in range(n)]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return str(path)


def out_lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---------------------------------------------------------------- bad input: exit 2, one line


@pytest.mark.parametrize("setup,argv_tail,message", [
    (None, ["missing.jsonl", "-o", "out.jsonl"], "input file not found"),
    ("", ["in.jsonl", "-o", "out.jsonl"], "has no requests (empty input)"),
    ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', ["in.jsonl", "-o", "out.jsonl"], "duplicate id 1"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "no/such/dir/out.jsonl"], "cannot write"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "out.jsonl", "--concurrency", "0"], "--concurrency must be 1-1024"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "out.jsonl", "--timeout", "inf"], "--timeout must be a finite"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "out.jsonl", "--timeout", "nan"], "--timeout must be a finite"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "out.jsonl", "--max-tokens", "-5"], "--max-tokens must be greater"),
    ('{"prompt": "a"}\n', ["in.jsonl", "-o", "out.jsonl", "--resume", "--overwrite"], "contradict"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, setup, argv_tail, message):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "in.jsonl").write_text(setup)
    code, out, err = run(capsys, "--demo", "--port", str(free_port()), "batch", *argv_tail)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("qwentui: error: ") and message in err
    assert "Traceback" not in err


def test_existing_results_need_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "out.jsonl").write_text('{"id": "q0", "content": "x"}\n')
    code, _, err = run(capsys, "--demo", "batch", prompts(tmp_path, 1), "-o", str(tmp_path / "out.jsonl"))
    assert code == 2 and "--resume" in err and "--overwrite" in err


# ---------------------------------------------------------------- the happy path, engine owned


def test_starts_engine_answers_everything_and_stops_it(tmp_path, capsys):
    port = free_port()
    bad = ["{not json", '{"id": "nothing"}']
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, "--config", config(tmp_path, port), "batch", prompts(tmp_path, 12, extra=bad),
                            "-o", str(out), "--concurrency", "4", "--then", "poweroff", "--dry-run")
    assert code == 1  # two lines were bad; the box is still powered off: the job ended on its own
    records = {r["id"]: r for r in out_lines(out)}
    assert len(records) == 14
    assert all(records[f"q{i}"]["finish_reason"] in ("stop", "length") for i in range(12))
    assert records["q0"]["usage"]["completion_tokens"] > 0 and records["q0"]["cached"] is False
    assert records[13]["error"].startswith("line 13: invalid JSON") and records[13]["retryable"] is False
    assert "line 14" in records["nothing"]["error"]
    assert "batch done: 14 requests · 12 ok · 2 failed" in stdout
    assert "SIMULATED" in stdout and "speed-up: ≈" in stdout
    assert "¥" in stdout and "per 1K generated tokens" in stdout
    assert "starting the engine: sim (SIMULATED)" in err
    assert "dry run: would power off with: systemctl poweroff" in stdout
    assert "2 of 14 requests failed" in err
    assert port_is_free(port)
    db = sqlite3.connect(tmp_path / "xdg" / "state" / "qwentui" / "ledger-sim.sqlite3")
    row = db.execute("SELECT stop_reason, tokens_out, requests, engine_kind FROM sessions").fetchone()
    assert row[0] == "batch-done" and row[1] > 0 and row[2] == 12 and row[3] == "sim"


def test_cache_second_run_is_served_from_cache(tmp_path, capsys, shared_sim):
    src, attach = prompts(tmp_path, 6), ["--attach", shared_sim.base_url, "--cache"]
    code, stdout, _ = run(capsys, "batch", src, "-o", str(tmp_path / "a.jsonl"), *attach)
    assert code == 0 and "cache (sqlite): 0 hits / 6 lookups" in stdout
    code, stdout, _ = run(capsys, "batch", src, "-o", str(tmp_path / "b.jsonl"), *attach)
    assert code == 0 and "6 ok (6 from cache)" in stdout and "cache (sqlite): 6 hits / 6 lookups (100%)" in stdout
    first = {r["id"]: r["content"] for r in out_lines(tmp_path / "a.jsonl")}
    second = out_lines(tmp_path / "b.jsonl")
    assert all(r["cached"] and r["content"] == first[r["id"]] for r in second)


def test_redis_down_disables_cache_and_batch_continues(tmp_path, capsys, shared_sim):
    extra = f'[cache]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:{free_port()}/0"\n'
    code, stdout, err = run(capsys, "--config", config(tmp_path, free_port(), extra=extra), "batch",
                            prompts(tmp_path, 3), "-o", str(tmp_path / "out.jsonl"), "--cache",
                            "--attach", shared_sim.base_url)
    assert code == 0 and len(out_lines(tmp_path / "out.jsonl")) == 3
    assert "warning: cache disabled: Redis at" in err and "the batch continues without it" in err


# ---------------------------------------------------------------- attached / already running


@pytest.fixture(scope="module")
def shared_sim():
    with running_sim() as sim:
        yield sim


def test_attach_uses_the_server_and_never_stops_it(tmp_path, capsys, shared_sim):
    code, stdout, err = run(capsys, "batch", prompts(tmp_path, 5), "-o", str(tmp_path / "out.jsonl"),
                            "--attach", shared_sim.base_url)
    assert code == 0 and len(out_lines(tmp_path / "out.jsonl")) == 5
    assert shared_sim.proc.poll() is None
    assert "(attached)" in stdout and "SIMULATED" in stdout


def test_reuses_an_engine_already_running_on_the_port(tmp_path, capsys, shared_sim):
    code, stdout, err = run(capsys, "--config", config(tmp_path, shared_sim.port), "batch", prompts(tmp_path, 3),
                            "-o", str(tmp_path / "out.jsonl"))
    assert code == 0 and "already running" in err and "(already running)" in stdout
    assert shared_sim.proc.poll() is None


def test_attach_to_nothing_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(capsys, "batch", prompts(tmp_path, 1), "-o", str(tmp_path / "out.jsonl"),
                       "--attach", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and err.startswith("qwentui: error: cannot reach") and "Traceback" not in err


# ---------------------------------------------------------------- engine crash mid-batch, then resume


def test_engine_crash_mid_batch_loses_nothing_and_resume_finishes(tmp_path, capsys):
    port = free_port()
    crashing = config(tmp_path, port, '"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 100, '
                                      '"--sim-crash-after" = "2.5s"')
    src, out = prompts(tmp_path, 40, max_tokens=32), tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, "--config", crashing, "batch", src, "-o", str(out), "--concurrency", "4",
                            "--retries", "1")
    assert code == 1
    first = out_lines(out)
    assert sorted(r["id"] for r in first) == sorted(f"q{i}" for i in range(40))  # one line per input
    ok = [r for r in first if "content" in r]
    failed = [r for r in first if "error" in r]
    assert ok and failed and all(r["retryable"] for r in failed)
    assert "engine problem:" in stdout and "can be retried with --resume" in err
    assert port_is_free(port)
    code, stdout, _ = run(capsys, "--config", config(tmp_path, port), "batch", src, "-o", str(out), "--resume")
    assert code == 0 and f"{len(ok)} already done" in stdout
    final = out_lines(out)
    assert sorted(r["id"] for r in final) == sorted(f"q{i}" for i in range(40))
    assert all("content" in r for r in final)


# ---------------------------------------------------------------- --then


def test_then_poweroff_runs_the_command_after_engine_stop_and_ledger_close(tmp_path, capsys):
    port = free_port()
    marker = tmp_path / "marker.txt"
    ledger = tmp_path / "xdg" / "state" / "qwentui" / "ledger-sim.sqlite3"
    probe = ("import socket, sqlite3, sys; s = socket.socket(); "
             f"free = s.connect_ex(('127.0.0.1', {port})) != 0; "
             f"row = sqlite3.connect({str(ledger)!r}).execute('SELECT stop_reason FROM sessions').fetchone(); "
             f"open({str(marker)!r}, 'w').write(f'{{free}} {{row[0]}}')")
    cmd = json.dumps([sys.executable, "-c", probe])
    cfg = config(tmp_path, port, extra=f"[idle]\npoweroff_command = {cmd}\n")
    code, _, err = run(capsys, "--config", cfg, "batch", prompts(tmp_path, 2), "-o", str(tmp_path / "out.jsonl"),
                       "--then", "poweroff")
    assert code == 0 and "power off requested" in err
    assert marker.read_text() == "True batch-done"  # engine gone and ledger closed before it ran


def test_then_keep_leaves_our_engine_running(tmp_path, capsys):
    import os
    import signal

    port = free_port()
    code, _, err = run(capsys, "--config", config(tmp_path, port), "batch", prompts(tmp_path, 2), "-o",
                       str(tmp_path / "out.jsonl"), "--then", "keep")
    assert code == 0 and "engine left running" in err and not port_is_free(port)
    import psutil

    pid = next(c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid)
    os.killpg(os.getpgid(pid), signal.SIGKILL)


# ---------------------------------------------------------------- Ctrl+C mid-batch, then resume


def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path, capsys):
    import os
    import signal
    import subprocess

    port = free_port()
    slow = config(tmp_path, port, '"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 50')
    src, out = prompts(tmp_path, 30, max_tokens=32), tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qwentui", "--config", slow, "batch", src, "-o", str(out),
                             "--concurrency", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    poll_until(lambda: out.exists() and out.read_text().count("\n") >= 3, 30)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted:" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert "batch interrupted:" in stdout
    assert port_is_free(port)  # the engine we started was stopped
    done = out_lines(out)  # every line complete and valid JSON
    assert 3 <= len(done) < 30 and all("content" in r for r in done)
    code, stdout, _ = run(capsys, "--config", config(tmp_path, port), "batch", src, "-o", str(out), "--resume")
    assert code == 0 and f"{len(done)} already done" in stdout
    assert sorted(r["id"] for r in out_lines(out)) == sorted(f"q{i}" for i in range(30))


# ---------------------------------------------------------------- flags → options


def test_resume_with_everything_done_needs_no_engine(tmp_path, capsys):
    (tmp_path / "out.jsonl").write_text('{"id": "q0", "content": "a"}\n{"id": "q1", "content": "b"}\n')
    code, _, err = run(capsys, "--demo", "--port", str(free_port()), "batch", prompts(tmp_path, 2), "-o",
                       str(tmp_path / "out.jsonl"), "--resume")
    assert code == 0 and "nothing to do: all 2 ids are already in" in err


def test_flags_resolve_against_config(tmp_path):
    from qwentui.cli import build_parser
    from qwentui.commands.batch import options
    from qwentui.config import from_mapping

    cfg = from_mapping({"chat": {"thinking": True, "max_tokens": 77}, "cache": {"enabled": True}})
    args = build_parser().parse_args(["batch", "in", "-o", "out", "--no-thinking", "--no-cache",
                                      "--keep-engine", "--attach", "http://127.0.0.1:1"])
    opts = options(args, cfg)
    assert (opts.thinking, opts.cache, opts.then, opts.max_tokens, opts.attach) == \
        (False, False, "keep", 77, "http://127.0.0.1:1")
    defaults = options(build_parser().parse_args(["batch", "in", "-o", "out"]), cfg)
    assert (defaults.thinking, defaults.cache, defaults.then, defaults.concurrency) == (True, True, "stop", 8)
    before = build_parser().parse_args(["--attach", "http://127.0.0.1:2", "batch", "in", "-o", "out"])
    assert options(before, cfg).attach == "http://127.0.0.1:2"  # a global flag is not reset by the subcommand
