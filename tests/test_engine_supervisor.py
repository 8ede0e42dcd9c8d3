"""The supervisor against the real simulator process: start, phases, stop, crash, attach."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from qwentui.config import Config
from qwentui.engine import EngineFailed, EngineState, Supervisor, phases, procs
from qwentui.errors import UsageError
from tests.waits import wait_until

FAST = {"--sim-cold-start": "0.2s", "--sim-tokens-per-s": 2000}


def sim_cfg(port: int, overrides: dict | None = None, **engine) -> Config:
    cfg = Config()
    engine.setdefault("stop_grace", 2.0)
    engine.setdefault("startup_timeout", 30.0)
    return dataclasses.replace(cfg, engine=dataclasses.replace(
        cfg.engine, kind="sim", port=port, overrides={**FAST, **(overrides or {})}, **engine))


def gone(pids: list[int]) -> list[int]:
    """PIDs from `pids` still alive (zombies count as gone: nobody runs in them)."""
    return [p.pid for p in procs.alive(psutil.Process(pid) for pid in pids if psutil.pid_exists(pid))]


async def test_start_phases_ready_stop_leaves_nothing(port):
    seen = []
    sup = Supervisor(sim_cfg(port), on_status=lambda s: seen.append((s.state, s.phase)))
    assert sup.status.simulated and sup.status.state is EngineState.STOPPED
    await sup.start()
    st = sup.status
    assert st.state is EngineState.READY and st.phase == "ready" and st.ready_at >= st.started_at
    assert [p for s, p in seen if s is EngineState.STARTING] == list(phases.PHASES[:-1])
    pids = sup.pids()
    assert len(pids) >= 2 and pids[0] == st.pid  # the server and its sglang::scheduler child
    assert sup.base_url == f"http://127.0.0.1:{port}" and sup.served_model == "Qwen/Qwen3-1.7B"
    t0 = time.monotonic()
    await sup.stop("user")
    took = time.monotonic() - t0
    assert took <= 2.0 + 1.0
    assert gone(pids) == [] and procs.port_free("127.0.0.1", port)
    st = sup.status
    assert (st.state, st.stop_reason, st.pid, st.exit_code) == (EngineState.STOPPED, "user", None, 0)
    assert any("SIGTERM received" in line for line in sup.log_lines())


async def test_log_file_is_private_and_masks_the_key(port):
    key = "sk-test-supersecret-42"
    sup = Supervisor(sim_cfg(port, api_key=key))
    await sup.start()
    await sup.stop()
    text = sup.log_path.read_text()
    assert stat.S_IMODE(sup.log_path.stat().st_mode) == 0o600
    assert "server_args=" in text and key not in text and "sk-t…(22 chars)" in text
    assert all(key not in line for line in sup.log_lines())
    assert all(key not in line for line in sup.status.log_tail)


async def test_no_health_polling_after_ready(port):
    sup = Supervisor(sim_cfg(port), liveness_interval=0.3)
    await sup.start()
    mark = len(sup.log_lines())
    await asyncio.sleep(1.5)
    after = sup.log_lines()[mark:]
    await sup.stop()
    assert not [line for line in after if "/health" in line]
    assert [line for line in after if "GET /ready" in line]  # liveness uses the cheap endpoint


async def test_sigterm_ignored_then_sigkill_after_grace(port):
    sup = Supervisor(sim_cfg(port, {"--sim-ignore-sigterm": True}, stop_grace=1.0))
    await sup.start()
    pids = sup.pids()
    t0 = time.monotonic()
    await sup.stop()
    took = time.monotonic() - t0
    assert 1.0 <= took <= 1.0 + 1.0
    assert gone(pids) == [] and procs.port_free("127.0.0.1", port)
    assert sup.status.exit_code == -9
    assert any("ignored SIGTERM" in line for line in sup.log_lines())


async def test_crash_mid_run_is_detected_with_log_tail(port):
    sup = Supervisor(sim_cfg(port, {"--sim-crash-after": "1.5s"}))
    await sup.start()
    pids = sup.pids()
    st = await asyncio.wait_for(sup.wait_exit(), 10)
    assert st.state is EngineState.CRASHED and st.stop_reason == "crash"
    assert "after it was ready" in st.error and st.exit_code != 0
    assert st.hint and any("Scheduler hit an exception" in line for line in st.log_tail)
    await wait_until(None, lambda: not gone(pids))
    assert procs.port_free("127.0.0.1", port)
    await sup.stop()  # harmless after a crash
    assert sup.status.state is EngineState.CRASHED


async def test_oom_at_start_gives_a_hint(port):
    sup = Supervisor(sim_cfg(port, {"--sim-oom": True, "--mem-fraction-static": 0.3}))
    with pytest.raises(EngineFailed) as err:
        await sup.start()
    assert "GPU out of memory" in err.value.message and "--mem-fraction-static" in err.value.hint
    assert sup.status.state is EngineState.CRASHED
    assert procs.port_free("127.0.0.1", port)


async def test_startup_timeout_stops_the_engine(port):
    sup = Supervisor(sim_cfg(port, {"--sim-cold-start": "10s"}, startup_timeout=1.0))
    t0 = time.monotonic()
    with pytest.raises(EngineFailed, match="not ready after 1s"):
        await sup.start()
    assert time.monotonic() - t0 < 5
    assert sup.status.state is EngineState.CRASHED and "startup_timeout" in sup.status.hint
    assert sup.pids() == [] and procs.port_free("127.0.0.1", port)


async def test_stop_during_start_up(port):
    sup = Supervisor(sim_cfg(port, {"--sim-cold-start": "5s"}))
    starting = asyncio.create_task(sup.start())
    await wait_until(None, lambda: sup.status.phase == phases.LOADING, 10)
    pids = sup.pids()
    await sup.stop("signal")
    with pytest.raises(EngineFailed, match="stopped before it was ready"):
        await starting
    assert gone(pids) == [] and sup.status.stop_reason == "signal"


async def test_exception_in_qwentui_stops_the_engine(port):
    sup = Supervisor(sim_cfg(port))
    with pytest.raises(RuntimeError):
        async with sup:
            await sup.start()
            pids = sup.pids()
            raise RuntimeError("bug in qwentui")
    assert gone(pids) == [] and sup.status.stop_reason == "error"


async def test_cancelled_start_stops_the_engine(port):
    sup = Supervisor(sim_cfg(port, {"--sim-cold-start": "5s"}))
    starting = asyncio.create_task(sup.start())
    await wait_until(None, lambda: sup.status.phase == phases.LOADING, 10)
    pids = sup.pids()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert gone(pids) == [] and sup.status.state is EngineState.STOPPED


async def test_restart_after_stop(port):
    sup = Supervisor(sim_cfg(port))
    await sup.start()
    await sup.stop()
    await sup.start()
    assert sup.status.state is EngineState.READY
    await sup.stop()
    assert sup.log_path.read_text().count("=== qwentui 0.1.0: starting") == 2


async def test_port_in_use_is_refused_before_spawning(port):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        sup = Supervisor(sim_cfg(port))
        with pytest.raises(UsageError, match=f"port {port} .* already in use.*--attach"):
            await sup.start()
    assert sup.status.state is EngineState.STOPPED and sup.status.pid is None


async def test_attach_never_stops_the_server():
    from tests.simproc import running_sim

    with running_sim(api_key="sk-attach-key-1") as sim:
        sup = Supervisor.attach(sim.base_url + "/v1", "sk-attach-key-1", liveness_interval=0.2)
        await sup.start()
        st = sup.status
        assert st.state is EngineState.READY and st.attached and st.simulated
        assert sup.served_model == "Qwen/Qwen3-1.7B" and sup.pids() == []
        await asyncio.sleep(0.5)
        await sup.stop()
        assert sup.status.state is EngineState.STOPPED
        assert sim.proc.poll() is None  # still running


async def test_attach_to_nothing_fails_cleanly(port):
    from qwentui.errors import QwentuiError

    sup = Supervisor.attach(f"http://127.0.0.1:{port}")
    with pytest.raises(QwentuiError, match="cannot reach"):
        await sup.start()
    assert sup.status.state is EngineState.STOPPED


def fake_sglang_python(tmp_path: Path, launch_body: str) -> str:
    """An interpreter wrapper whose Python 'has SGLang': a stub package on PYTHONPATH."""
    pkg = tmp_path / "site" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0.5.23'\n")
    (pkg / "launch_server.py").write_text(launch_body)
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path / 'site'} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


async def test_sglang_kind_missing_weights_gives_hub_hint(tmp_path, port):
    python = fake_sglang_python(tmp_path, (
        "import sys\nprint('[ts] Load weight begin. avail mem=14.57 GB', file=sys.stderr)\n"
        "print(\"OSError: We couldn't connect to 'https://huggingface.co' to load the files\", file=sys.stderr)\n"
        "sys.exit(1)\n"))
    cfg = sim_cfg(port, {}, python=python)
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="sglang", overrides={}))
    sup = Supervisor(cfg, preset="t4")
    with pytest.raises(EngineFailed) as err:
        await sup.start()
    assert "while loading weights" in err.value.message and "hub cannot be reached" in err.value.message
    assert "huggingface-cli download" in err.value.hint
    assert sup.plan.argv[0] == python and "--dtype" in sup.plan.argv


async def test_sglang_kind_bad_python_and_missing_sglang(tmp_path, port):
    cfg = sim_cfg(port, {}, python=str(tmp_path / "nope" / "python"))
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="sglang", overrides={}))
    with pytest.raises(UsageError, match="engine.python .* not found"):
        await Supervisor(cfg, preset="t4").start()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, python=sys.executable))
    with pytest.raises(UsageError, match="has no sglang module: pip install 'qwentui\\[sglang\\]'"):
        await Supervisor(cfg, preset="t4").start()


async def test_offline_model_missing_locally(tmp_path, port, monkeypatch):
    python = fake_sglang_python(tmp_path, "raise SystemExit(0)\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cfg = sim_cfg(port, {}, python=python)
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="sglang", overrides={}))
    with pytest.raises(UsageError, match="not on this machine and the Hugging Face hub is offline"):
        await Supervisor(cfg, preset="t4").start()
    snap = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-1.7B" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    from qwentui.engine import preflight

    preflight.check_model(cfg.engine)  # cached → fine
    with pytest.raises(UsageError, match="is not a directory"):
        preflight.check_model(dataclasses.replace(cfg.engine, model=str(tmp_path / "no-such-model")))


async def test_keep_engine_detach_leaves_it_running_with_a_masked_log(port):
    key = "sk-kept-engine-secret"
    sup = Supervisor(sim_cfg(port, api_key=key), keep_engine=True)
    await sup.start()
    pids = sup.pids()
    pid = sup.detach()
    assert pid == pids[0] and sup.status.attached and sup.pids() == []
    await sup.stop()  # detached: not ours to stop
    try:
        assert psutil.pid_exists(pid) and not procs.port_free("127.0.0.1", port)
    finally:
        os.killpg(pid, 15)
    await wait_until(None, lambda: not gone(pids), 10)
    await wait_until(None, lambda: "relay: engine closed its output" in sup.log_path.read_text(), 5)
    text = sup.log_path.read_text()
    assert "SIGTERM received" in text and key not in text
