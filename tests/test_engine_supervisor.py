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
from qwentui.sim.launch import DRAIN_POLL_S
from tests.waits import wait_until

FAST = {"--sim-cold-start": "0.2s", "--sim-tokens-per-s": 2000}


def sim_cfg(port: int, overrides: dict | None = None, **engine) -> Config:
    cfg = Config()  # default stop_grace: the simulator reacts to SIGTERM on SGLang's 5 s tick
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
    assert took <= DRAIN_POLL_S + 1.0 + 1.5  # SGLang's 5 s tick + the scheduler's exit
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
    (pkg / "cli").mkdir()
    (pkg / "cli" / "__init__.py").write_text("")
    # `sglang serve` = sglang.cli.main:main, the entrypoint 0.5.23 recommends
    (pkg / "cli" / "main.py").write_text("def main():\n" + "".join(
        f"    {line}\n" for line in launch_body.splitlines()))
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
    relay = next(p for p in psutil.process_iter(["cmdline"]) if "qwentui.engine.relay" in " ".join(p.info["cmdline"] or []))
    flags = int(open(f"/proc/{relay.pid}/fdinfo/0").read().split("flags:")[1].split()[0], 8)
    assert not flags & os.O_NONBLOCK  # issue 16 #3: a shared non-blocking pipe made the relay's read fail
    await sup.stop()  # detached: not ours to stop
    try:
        assert psutil.pid_exists(pid) and not procs.port_free("127.0.0.1", port)
    finally:
        os.killpg(pid, 15)
    await wait_until(None, lambda: not gone(pids), 10)
    await wait_until(None, lambda: "relay: engine closed its output" in sup.log_path.read_text(), 5)
    text = sup.log_path.read_text()
    assert "SIGTERM received" in text and key not in text


async def _stream_forever(base_url: str, headers: dict | None = None) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        async with client.stream("POST", base_url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "long"}], "stream": True, "ignore_eos": True,
                "max_tokens": 30000}) as response:
            async for _ in response.aiter_bytes():
                pass


async def test_stop_with_default_grace_is_clean_even_with_a_request_in_flight(port):
    """abort_all + SGL_FORCE_SHUTDOWN: no drain of a long stream, no SIGKILL, GPU memory freed."""
    sup = Supervisor(sim_cfg(port, {"--sim-tokens-per-s": 100}))
    assert sup.cfg.engine.stop_grace >= 25
    await sup.start()
    stream = asyncio.create_task(_stream_forever(sup.base_url))  # 300 s of tokens
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    await sup.stop("user")
    took = time.monotonic() - t0
    stream.cancel()
    await asyncio.gather(stream, return_exceptions=True)
    lines = sup.log_lines()
    assert took <= DRAIN_POLL_S + 1.0 + 1.5, took
    assert sup.status.exit_code == 0 and not any("SIGKILL" in line and "sending" in line for line in lines)
    assert any("POST /abort_request abort_all: HTTP 200" in line for line in lines)
    assert not any("Gracefully exiting" in line for line in lines)


async def test_ignored_sigterm_is_killed_within_grace_plus_one_second(port):
    sup = Supervisor(sim_cfg(port, {"--sim-ignore-sigterm": True}, stop_grace=2.0))
    await sup.start()
    t0 = time.monotonic()
    await sup.stop()
    assert 2.0 <= time.monotonic() - t0 <= 2.0 + 1.0
    assert sup.status.exit_code == -9


async def test_leftovers_of_our_engine_are_removed_and_counted(port):
    from qwentui.engine.rundir import shm_path_for

    sup = Supervisor(sim_cfg(port))
    await sup.start()
    run_dir = sup._run_dir.path
    sockets = [p for p in run_dir.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]
    shm = [shm_path_for(f"ipc://{p}") for p in sockets]
    assert len(sockets) == 5 and sum(p.exists() for p in shm) == 1
    await sup.stop()
    assert not run_dir.exists() and not any(p.exists() for p in shm)
    assert any("removed 6 leftover file(s) of this engine" in line for line in sup.log_lines())


async def test_crashed_engine_leftovers_are_removed_too(port):
    sup = Supervisor(sim_cfg(port, {"--sim-crash-after": "1s"}))
    await sup.start()
    run_dir = sup._run_dir.path
    await wait_until(None, lambda: sup.status.state is EngineState.CRASHED, 15)
    assert not run_dir.exists()
    assert any("removed 7 leftover file(s)" in line for line in sup.log_lines())  # + metrics dir (SIGKILL)


def _ps_args() -> str:
    import subprocess

    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout


async def test_api_key_of_an_exposed_engine_is_never_on_a_command_line(port):
    import httpx

    sup = Supervisor(sim_cfg(port, host="0.0.0.0"))
    key = sup.api_key
    assert key  # generated: the engine is reachable from outside
    await sup.start()
    try:
        for pid in sup.pids():
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                assert key.encode() not in fh.read()
        assert key not in _ps_args() and f"--config {sup._run_dir.config_path}" in _ps_args()
        assert not sup._run_dir.config_path.exists()  # read at launch, removed once ready
        async with httpx.AsyncClient(base_url=sup.base_url) as client:
            assert (await client.get("/v1/models")).status_code == 401
            info = (await client.get("/server_info", headers={"Authorization": f"Bearer {key}"})).json()
        assert key not in info["launch_command"] and "--config" in info["launch_command"]
        assert info["api_key"] == key  # the engine got it (SGLang reports server args in clear)
    finally:
        await sup.stop()


async def test_config_file_is_private_while_it_exists(port, monkeypatch):
    from qwentui.engine import rundir

    modes = []
    real = rundir.RunDir.write_config

    def spy(self, values):
        path = real(self, values)
        modes.append((stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode)))
        return path

    monkeypatch.setattr(rundir.RunDir, "write_config", spy)
    sup = Supervisor(sim_cfg(port, api_key="sk-private-file-1"))
    await sup.start()
    await sup.stop()
    assert modes == [(0o600, 0o700)]


async def test_a_second_instance_does_not_adopt_the_first_ones_engine(port):
    """B starts while A is still loading (port closed, preflight passes); when A's engine
    answers /health on the shared port, B must keep waiting for its own engine."""
    first = Supervisor(sim_cfg(port, {"--sim-cold-start": "1s"}))
    second = Supervisor(sim_cfg(port, {"--sim-cold-start": "6s"}))
    first_start = asyncio.create_task(first.start())
    await asyncio.sleep(0.2)
    try:
        with pytest.raises(EngineFailed, match="port was taken"):
            await second.start()
        await first_start
        assert first.status.state is EngineState.READY
        assert any("but not by our engine" in line for line in second.log_lines())
    finally:
        await first.stop()
        await second.stop()


async def test_unhealthy_engine_is_reported_and_stops_without_a_drain(port):
    sup = Supervisor(sim_cfg(port, {"--sim-unhealthy-after": "0.5s"}), liveness_interval=0.3)
    await sup.start()
    await wait_until(None, lambda: sup.status.unhealthy, 10)
    st = sup.status
    assert st.state is EngineState.READY and not st.responsive and "UnHealthy" in st.error and "F5" in st.hint
    await asyncio.sleep(0.7)
    assert sup.status.unhealthy  # /ready stays 503: the flag does not flap
    await sup.stop()
    assert sup.status.exit_code == 0
    assert any("Signal SIGTERM received while health check failed. Force exiting." in line
               for line in sup.log_lines())


async def test_header_shows_an_unhealthy_engine():
    from textual.app import App

    from qwentui.engine import EngineStatus
    from qwentui.ui.widgets.header import EngineHeader

    class Host(App):
        def compose(self):
            yield EngineHeader()

    status = EngineStatus(EngineState.READY, "ready", "sim", "Qwen/Qwen3-1.7B", "http://127.0.0.1:1",
                          simulated=True, responsive=False, unhealthy=True)
    async with Host().run_test(size=(80, 3)) as pilot:
        header = pilot.app.query_one(EngineHeader)
        header.status = status
        await pilot.pause()
        assert "▲ UNHEALTHY" in header.render().plain
        header.status = dataclasses.replace(status, unhealthy=False, responsive=True)
        await pilot.pause()
        assert "● READY" in header.render().plain


def test_stale_run_dirs_are_swept_only_when_their_processes_are_gone(tmp_path):
    import subprocess

    from qwentui.engine.rundir import RunDir, shm_path_for, sweep_stale

    shm = tmp_path / "shm"
    shm.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live, unowned = (RunDir(str(tmp_path), shm) for _ in range(3))
    for d in (stale, live, unowned):
        (d.path / "tmpabc123").write_text("")  # a ZMQ socket file stand-in
        shm_path_for(f"ipc://{d.path / 'tmpabc123'}", shm).write_bytes(b"x")
    (stale.path / "owner").write_text(f"{dead.pid} {dead.pid}\n")
    (live.path / "owner").write_text(f"{dead.pid} {os.getpid()}\n")  # e.g. a kept engine still runs
    assert sweep_stale(str(tmp_path), shm) == 2
    assert not stale.path.exists() and live.path.exists() and unowned.path.exists()
    assert len(list(shm.iterdir())) == 2
