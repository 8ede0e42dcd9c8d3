"""`qwentui serve` in-process: the main loop's hooks, exceptions, stop during start-up, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import socket
import sys

import psutil
import pytest

from qwentui import cli
from qwentui.runtime.serve import ServeSession
from qwentui.config import Config
from qwentui.engine import procs


def alive(pids: list[int]) -> list[int]:
    return [p.pid for p in procs.alive(psutil.Process(pid) for pid in pids if psutil.pid_exists(pid))]


# ----- in-process: hooks, exceptions, bad input ---------------------------------------------


def sim_cfg(port: int) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, engine=dataclasses.replace(
        cfg.engine, kind="sim", port=port, stop_grace=10.0, overrides={"--sim-cold-start": "0.2s"}))


async def test_tick_hook_can_stop_the_engine_and_exit_hooks_run(port):
    out = io.StringIO()
    session = ServeSession(sim_cfg(port), out=out, tick=0.1)
    ticks, exits = [], []

    async def idle_hook(s):
        ticks.append(s.sup.status.state.value)
        if len(ticks) == 3:
            s.request_stop("idle")

    session.on_tick.append(idle_hook)
    session.on_exit.append(lambda s: exits.append(s.stop_reason))
    assert await session.run() == 0
    assert ticks == ["ready"] * 3 and exits == ["idle"]
    assert session.sup.status.stop_reason == "idle" and procs.port_free("127.0.0.1", port)
    assert "stopping engine (idle)" in out.getvalue()


async def test_exception_in_a_hook_still_stops_the_engine(port):
    session = ServeSession(sim_cfg(port), out=io.StringIO(), tick=0.1)
    seen = []

    def broken(s):
        seen.extend(s.sup.pids())
        raise RuntimeError("bug in a hook")

    session.on_tick.append(broken)
    with pytest.raises(RuntimeError, match="bug in a hook"):
        await session.run()
    assert seen and alive(seen) == [] and session.sup.status.stop_reason == "error"


async def test_stop_requested_during_start_up(port):
    cfg = sim_cfg(port)
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, overrides={"--sim-cold-start": "5s"}))
    session = ServeSession(cfg, out=io.StringIO())
    task = asyncio.create_task(session.run())
    await asyncio.sleep(1.0)
    pids = session.sup.pids()
    session.request_stop("signal")
    assert await asyncio.wait_for(task, 10) == 0
    assert pids and alive(pids) == []


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("qwentui: error: ")
    return err[0]


@pytest.mark.parametrize("argv,env,msg", [
    (["serve", "--demo", "--port", "0"], {}, "--port must be an integer 1-65535"),
    (["serve", "--demo", "--port", "65536"], {}, "--port must be an integer 1-65535"),
    (["serve", "--demo"], {"QWENTUI_ENGINE_HOST": "not-an-address"}, "environment: QWENTUI_ENGINE_HOST must be an IP address"),
    (["serve", "--demo", "--preset", "nope"], {}, "unknown preset 'nope'"),
    (["serve", "--demo"], {"QWENTUI_ENGINE_EXTRA_ARGS": '["--port", "1"]'}, "--port conflicts with --port"),
    (["serve", "--demo"], {"QWENTUI_ENGINE_EXTRA_ARGS": '["--host=0.0.0.0"]'}, "--host conflicts"),
    (["serve", "--demo", "--stop-grace", "soon"], {}, "--stop-grace must be a duration"),
    (["serve", "--demo", "--startup-timeout", "0s"], {}, "--startup-timeout must be greater than zero"),
    (["serve", "--attach", "localhost:30000"], {}, "--attach needs an http(s) URL"),
    (["serve", "--engine", "sglang"], {"QWENTUI_ENGINE_PYTHON": "/nonexistent/python3"}, "engine.python '/nonexistent/python3' not found"),
    (["serve", "--engine", "sglang"], {"QWENTUI_ENGINE_PYTHON": sys.executable}, "has no sglang module"),
])
def test_serve_bad_input(argv, env, msg, capsys, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 2
    assert msg in one_error_line(capsys)


def test_serve_port_in_use(capsys, port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert cli.main(["serve", "--demo", "--port", str(port)]) == 2
    line = one_error_line(capsys)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--attach" in line


def test_serve_offline_model(capsys, monkeypatch, tmp_path):
    from tests.test_engine_supervisor import fake_sglang_python

    monkeypatch.setenv("QWENTUI_ENGINE_PYTHON", fake_sglang_python(tmp_path, "raise SystemExit(0)\n"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cli.main(["serve", "--engine", "sglang"]) == 2
    assert "not on this machine and the Hugging Face hub is offline" in one_error_line(capsys)
