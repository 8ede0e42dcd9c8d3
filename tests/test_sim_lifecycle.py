"""Simulator process lifecycle: start-up timeline, logs, child process, signals, failures (§8, §10)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import free_port
from qwentui.engine.rundir import RunDir, shm_path_for
from qwentui.sim.launch import DRAIN_POLL_S
from tests.simproc import READY_LINE, running_sim, start_sim
from tests.waits import poll_until

TS = r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] "
TQDM = ("Loading safetensors checkpoint shards:", "Capturing batches")


def wait_exit(sim, timeout: float = 10.0) -> int:
    try:
        return sim.proc.wait(timeout)
    finally:
        if sim.proc.poll() is None:
            sim.proc.kill()


def _dead(pid: int) -> bool:
    """Exited (a zombie counts: its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def gone(pid: int, timeout: float = 5.0) -> bool:
    return poll_until(lambda: _dead(pid), timeout)


def test_startup_timeline_port_closed_then_warming_then_ready():
    sim = start_sim(cold_start="2s")
    c = httpx.Client(base_url=sim.base_url, timeout=5)
    try:
        sim.wait_for_line("Load weight begin")
        with pytest.raises(httpx.ConnectError):
            c.get("/v1/models")
        sim.wait_for_line("Uvicorn running on http://127.0.0.1:")
        samples = []  # (ready, models, model_info, health) while warming up
        while not any(READY_LINE in line for line in sim.stderr_lines()):
            samples.append((c.get("/ready").status_code, c.get("/v1/models").status_code,
                            c.get("/model_info").status_code, c.get("/health").status_code))
        assert (503, 200, 200, 503) in samples
        assert c.get("/ready").status_code == 200
    finally:
        c.close()
        assert sim.stop() == 0


def test_log_lines_format_order_streams_and_sigterm_when_idle():
    with running_sim(api_key="k-123") as sim:
        httpx.get(sim.base_url + "/v1/models", headers=sim.headers)
        sim.wait_for_line('"GET /v1/models HTTP/1.1" 200', stream="stdout")
        t = time.monotonic()
        sim.proc.send_signal(signal.SIGTERM)
        assert wait_exit(sim) == 0
        # SGLang's watchdog sees SIGTERM on its next 5 s tick; the scheduler then takes ~1 s
        assert 1.0 <= time.monotonic() - t < DRAIN_POLL_S + 1.0 + 1.5
        lines = sim.stderr_lines()
    assert "SIMULATED" in lines[0] and "qwentui simulator" in lines[0]
    assert re.match(TS + r"server_args=\{.*'api_key': 'k-123'.*'simulated': True", lines[1])  # in clear, like SGLang
    for line in lines:
        assert re.match(TS, line) or line.startswith(TQDM), line
    text = "\n".join(lines)
    order = ["Load weight begin", "Load weight end", "KV Cache is allocated", "Memory pool end",
             "Capture target decode CUDA graph begin", "Capture target decode CUDA graph end", "max_total_num_tokens=",
             "INFO:     Started server process", "Using default chat sampling params", "INFO:     Uvicorn running on",
             READY_LINE, "SIGTERM received. signum=None frame=None. Draining requests and shutting down..."]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert any(re.match(TS + r'INFO:     127\.0\.0\.1:\d+ - "GET /v1/models HTTP/1\.1" 200', s)
               for s in sim.stdout_lines())
    assert not any("GET /v1/models" in s for s in lines)  # access lines only on stdout


def test_log_levels_hide_phase_and_access_lines():
    with running_sim("--log-level", "warning") as sim:
        httpx.get(sim.base_url + "/v1/models")
        time.sleep(0.2)
        text = "\n".join(sim.stderr_lines())
        assert "SIMULATED" in text and "Load weight begin" not in text and "Uvicorn running" not in text
        assert sim.stdout_lines() == []


def test_scheduler_child_named_and_dies_with_parent():
    sim = start_sim()
    try:
        sim.wait_ready()
        children = sim.children()
        assert len(children) == 1
        child = children[0]
        with open(f"/proc/{child}/comm") as fh:
            assert fh.read().strip() == "sglang::schedul"  # 15-char comm, like setproctitle's
        with open(f"/proc/{child}/cmdline", "rb") as fh:
            assert b"sglang::scheduler" in fh.read()
        sim.proc.kill()
        sim.proc.wait()
        assert gone(child)
    finally:
        sim.stop()


def test_sigterm_drains_in_flight_stream_then_exits_zero():
    with running_sim(tokens_per_s=400) as sim:
        result = {}

        def client():
            with httpx.stream("POST", sim.base_url + "/v1/chat/completions", timeout=30, json={
                    "messages": [{"role": "user", "content": "long"}], "stream": True, "ignore_eos": True,
                    "max_tokens": 3200}) as r:  # 8 s: outlasts the watchdog's first 5 s tick
                result["text"] = "".join(r.iter_text())

        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.3)
        sim.proc.send_signal(signal.SIGTERM)
        assert httpx.get(sim.base_url + "/health").status_code == 503
        assert httpx.get(sim.base_url + "/ready").status_code == 503
        sim.wait_for_line("Gracefully exiting... Remaining number of requests 1.", timeout=DRAIN_POLL_S + 1)
        t.join(20)
        assert result["text"].endswith("data: [DONE]\n\n") and '"finish_reason":"length"' in result["text"]
        assert wait_exit(sim, 20) == 0


def test_ignore_sigterm_flag_then_sigquit_kills_tree_with_sigkill():
    with running_sim("--sim-ignore-sigterm") as sim:
        child = sim.children()
        sim.proc.send_signal(signal.SIGTERM)
        sim.wait_for_line("SIGTERM ignored")
        time.sleep(0.3)
        assert sim.proc.poll() is None
        assert httpx.get(sim.base_url + "/ready").status_code == 200
        sim.proc.send_signal(signal.SIGQUIT)
        assert wait_exit(sim) == -signal.SIGKILL
        sim.wait_for_line("SIGQUIT received. signum=3, frame=None. It usually means one child failed.")
        assert all(gone(pid) for pid in child)


def test_sigterm_while_loading_kills_by_sigterm():
    sim = start_sim(cold_start="5s")
    try:
        sim.wait_for_line("Load weight begin")
        child = sim.children()
        sim.proc.send_signal(signal.SIGTERM)
        assert wait_exit(sim) == -signal.SIGTERM
        assert all(gone(pid) for pid in child)
    finally:
        sim.stop()


def test_sigterm_before_any_generate_with_skip_warmup_dies_by_sigterm():
    with running_sim("--skip-server-warmup") as sim:
        sim.proc.send_signal(signal.SIGTERM)
        assert wait_exit(sim) == -signal.SIGTERM


def test_crash_after_dies_like_sglang():
    with running_sim("--sim-crash-after", "1s") as sim:
        assert wait_exit(sim, 10) == -signal.SIGKILL
        text = "\n".join(sim.stderr_lines())
    assert "Scheduler hit an exception: Traceback (most recent call last):" in text
    assert "CUDA error: an illegal memory access was encountered" in text
    assert "SIGQUIT received" in text


def test_killed_child_triggers_watchdog_and_sigquit():
    with running_sim() as sim:
        child = sim.children()[0]
        os.kill(child, signal.SIGKILL)
        assert wait_exit(sim, 10) == -signal.SIGKILL
        sim.wait_for_line(f"Subprocess scheduler_0 (pid={child}) crashed with exit code -9. "
                          "Triggering SIGQUIT for cleanup...")


@pytest.mark.parametrize("extra,message", [
    ((), "Capture cuda graph failed: CUDA out of memory."),
    (("--mem-fraction-static", "0.3"),
     "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. Current value: "
     "mem_fraction_static=0.3"),
])
def test_oom_fails_start_with_sglang_messages(extra, message):
    with running_sim("--sim-oom", *extra, wait_ready=False) as sim:
        assert wait_exit(sim, 10) == -signal.SIGKILL
        text = "\n".join(sim.stderr_lines())
        assert message in text and "Scheduler hit an exception" in text
        assert "Received sigquit from a child process. It usually means the child failed." in text
        assert "Uvicorn running" not in text and READY_LINE not in text


def test_port_in_use_exits_nonzero_after_load():
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with running_sim(port=port, wait_ready=False) as sim:
            assert wait_exit(sim, 10) not in (0, None) and sim.proc.returncode > 0  # uvicorn's startup failure
            text = "\n".join(sim.stderr_lines())
    assert "Load weight end" in text  # the port is only tried after loading, as in SGLang
    assert re.search(r"\[Errno 98\] error while attempting to bind on address \('127\.0\.0\.1', \d+\)", text)


def test_qwentui_sim_subcommand_forwards_flags():
    port = free_port()
    bad = subprocess.run([sys.executable, "-m", "qwentui", "sim", "--model-path", "m", "--bogus"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "qwentui", "sim", "--model-path", "m", "--port", str(port),
                             "--sim-cold-start", "0.2s"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:
            if READY_LINE in line:
                break
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"] == "m"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_sigterm_to_the_process_group_kills_scheduler_and_server_dies_by_sigkill():
    """A group SIGTERM also hits the scheduler (default action): SGLang's watchdog path, no drain.

    So a supervisor that wants the drain must SIGTERM the main pid, not the group.
    """
    with running_sim() as sim:
        child = sim.children()[0]
        os.killpg(sim.pid, signal.SIGTERM)  # simproc starts each simulator in its own session
        assert wait_exit(sim) == -signal.SIGKILL
        sim.wait_for_line(f"Subprocess scheduler_0 (pid={child}) crashed with exit code -15. "
                          "Triggering SIGQUIT for cleanup...")


def _stream_in_background(sim, tokens: int = 4000) -> threading.Thread:
    def client():
        with httpx.stream("POST", sim.base_url + "/v1/chat/completions", timeout=30, json={
                "messages": [{"role": "user", "content": "long"}], "stream": True, "ignore_eos": True,
                "max_tokens": tokens}) as r:
            for _ in r.iter_bytes():
                pass

    t = threading.Thread(target=client, daemon=True)
    t.start()
    return t


def test_force_shutdown_env_skips_the_drain_but_waits_for_the_scheduler():
    with running_sim("--sim-scheduler-exit", "1.5s", tokens_per_s=400, env={"SGL_FORCE_SHUTDOWN": "1"}) as sim:
        _stream_in_background(sim)  # 10 s of tokens: a drain would wait for them
        time.sleep(0.3)
        t = time.monotonic()
        sim.proc.send_signal(signal.SIGTERM)
        assert wait_exit(sim, 15) == 0
        took = time.monotonic() - t
        assert 1.5 <= took < DRAIN_POLL_S + 1.5 + 1.5
        text = "\n".join(sim.stderr_lines())
        assert "Signal SIGTERM received while force shutdown flag set. Force exiting." in text
        assert "Gracefully exiting" not in text


def test_unhealthy_state_fails_ready_and_skips_the_drain():
    with running_sim("--sim-unhealthy-after", "0.3s", tokens_per_s=400) as sim:
        sim.wait_for_line("Health check failed. Server couldn't get a response from detokenizer")
        assert httpx.get(sim.base_url + "/ready").status_code == 503
        assert httpx.get(sim.base_url + "/health").status_code == 503
        _stream_in_background(sim)
        time.sleep(0.3)
        sim.proc.send_signal(signal.SIGTERM)
        assert wait_exit(sim, 15) == 0
        text = "\n".join(sim.stderr_lines())
        assert "Signal SIGTERM received while health check failed. Force exiting." in text
        assert "Gracefully exiting" not in text


def _socket_files(path) -> list:
    import stat as st

    return [p for p in path.iterdir() if st.S_ISSOCK(p.lstat().st_mode)]


def test_leaves_sglang_like_files_and_the_run_dir_removes_exactly_those(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    with running_sim() as sim:
        run_dir = sim.run_dir
        sockets = _socket_files(run_dir.path)
        assert len(sockets) == 5  # SGLang's 5 ZMQ ipc files (NamedTemporaryFile delete=False)
        mine = [shm_path_for(f"ipc://{p}") for p in sockets]
        assert sum(p.exists() for p in mine) == 1  # /dev/shm/sglang_loads_<name>_<digest>.shm
        dirs = [p for p in run_dir.path.iterdir() if p.is_dir()]
        assert len(dirs) == 1  # the Prometheus multiprocess dir
        other = shm_path_for("ipc:///tmp/tmp-another-engine")  # another engine's snapshot: never touched
        other.write_bytes(b"x")
        try:
            sim.proc.kill()  # SIGKILL: the metrics dir stays too
            sim.proc.wait()
            assert len(run_dir.leftovers()) == 5 + 1 + 1
            assert run_dir.clean() == 7
            assert not run_dir.path.exists() and not any(p.exists() for p in mine) and other.exists()
        finally:
            other.unlink()
