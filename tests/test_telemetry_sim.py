"""Telemetry against the SGLang simulator (a real child process), and the `qwentui gpu` command."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from qwentui import cli
from qwentui.telemetry import Nvml, Sampler, scrape
from qwentui.telemetry.host import listener_pid, process_tree
from tests.fake_nvml import FakeNvml
from tests.simproc import running_sim


@pytest.fixture(scope="module")
def shared_sim():
    """One simulator for the read-mostly tests of this module (each start costs ~1 s)."""
    with running_sim() as proc:
        yield proc


async def _chat(client: httpx.AsyncClient, base_url: str, max_tokens: int = 40) -> dict:
    r = await client.post(base_url + "/v1/chat/completions", json={
        "model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
    r.raise_for_status()
    return r.json()


async def test_sim_metrics_before_and_after_requests(shared_sim):
    sim = shared_sim
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        before = await scrape(client, sim.base_url)
        assert before.available, before.error
        assert before.model_name == "Qwen/Qwen3-1.7B"
        assert before.running == 0 and before.queued == 0 and 0 <= before.token_usage <= 1
        assert before.max_total_tokens > 0
        start_gen, start_req = before.generation_tokens_total, before.requests_total
        answers = [await _chat(client, sim.base_url) for _ in range(2)]
        after = await scrape(client, sim.base_url)
    produced = sum(a["usage"]["completion_tokens"] for a in answers)
    assert after.requests_total - start_req == 2
    assert after.generation_tokens_total - start_gen == produced
    assert after.ttft_p50_s is not None and after.ttft_p50_s >= 0
    assert after.e2e_p50_s > 0


async def test_sampler_on_sim_rates_pids_and_no_health():
    with running_sim(tokens_per_s=400) as sim:
        pids = process_tree(sim.pid)
        assert len(pids) >= 2  # the simulator and its sglang::scheduler child
        sampler = Sampler(base_url=sim.base_url, nvml=Nvml(module=FakeNvml([])), engine_pids=lambda: pids,
                          simulated=True, interval=0.3)
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            await sampler.sample_once()
            chat = asyncio.create_task(_chat(client, sim.base_url, max_tokens=400))
            rates = []
            while not chat.done():
                await asyncio.sleep(0.3)
                rates.append((await sampler.sample_once()).rates.generation_tokens_per_s)
            await chat
        last = await sampler.sample_once()
        await sampler.aclose()
        access = "\n".join(sim.stdout_lines() + sim.stderr_lines())
    assert any(r and r > 50 for r in rates), rates
    assert last.gpu.status == "no-gpu" and last.simulated
    assert last.host.engine_procs == len(pids) and last.host.engine_rss > 0
    assert "GET /metrics" in access or "/metrics" in access
    assert "/health" not in access


async def test_sim_without_metrics_is_unavailable_with_reason():
    with running_sim(metrics=False) as sim:
        async with httpx.AsyncClient(trust_env=False) as client:
            m = await scrape(client, sim.base_url)
    assert not m.available and m.error == "HTTP 404: engine started without --enable-metrics?"


def test_listener_pid_finds_the_engine(shared_sim):
    sim = shared_sim
    assert listener_pid(sim.port) == sim.pid
    assert sim.children()[0] in process_tree(sim.pid)


# -- `qwentui gpu` ---------------------------------------------------------------------------

def test_gpu_command_json_against_sim(shared_sim, capsys):
    sim = shared_sim
    assert cli.main(["gpu", "--json", "--demo", "--port", str(sim.port)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["simulated"] is True and data["engine"]["available"] is True
    assert data["engine"]["running"] == 0 and data["gpu"]["status"] in ("no-nvml", "no-gpu", "ok")
    assert set(data) >= {"at", "gpu", "engine", "host", "rates", "tokens_per_s"}
    assert data["host"]["engine_procs"] >= 2  # found through the port's listener: sim + scheduler


def test_gpu_command_text_and_alias(shared_sim, capsys):
    sim = shared_sim
    assert cli.main(["top", "--attach", sim.base_url]) == 0
    out = capsys.readouterr().out
    assert f"engine  {sim.base_url}" in out and "running 0" in out and "KV cache" in out
    assert out.splitlines()[-1].startswith("host    cpu ")


def test_gpu_command_no_engine(capsys, port):
    assert cli.main(["gpu", "--demo", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert "no GPU detected (simulated engine)" in out or "GPU 0" in out
    assert "[SIMULATED]  metrics unavailable: engine not reachable" in out


def test_gpu_command_watch_ndjson(shared_sim, capsys, monkeypatch):
    sim = shared_sim
    """--watch prints one JSON line per tick until interrupted."""
    import qwentui.commands.gpu as gpu_cmd

    emitted = []
    real_emit = gpu_cmd._emit

    def emit(*args, **kwargs):
        real_emit(*args, **kwargs)
        emitted.append(1)
        if len(emitted) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(gpu_cmd, "_emit", emit)
    assert cli.main(["gpu", "--watch", "0.1s", "--json", "--port", str(sim.port)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and [json.loads(x)["seq"] for x in lines] == [1, 2, 3]


@pytest.mark.parametrize("argv, words", [
    (["gpu", "--watch", "soon"], "--watch must be a duration"),
    (["gpu", "--watch", "0"], "--watch must be greater than zero"),
    (["gpu", "--attach", "ftp://x"], "--attach must be a URL"),
])
def test_gpu_command_bad_input(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qwentui: error: ") and words in err and len(err.strip().splitlines()) == 1


def test_gpu_command_text_rendering_of_gpu_states():
    from qwentui.commands.gpu import render
    from qwentui.telemetry import NA, EngineMetrics, HostSample, NvmlSnapshot, Snapshot
    from qwentui.telemetry.nvml import GpuSample

    gib = 1024**3
    ok = GpuSample(0, "NVIDIA L4", "L4", memory_used_bytes=20 * gib, memory_total_bytes=22 * gib, util_gpu_pct=80,
                   util_mem_pct=40, temperature_c=NA, power_mw=NA, power_limit_mw=72_000, clock_sm_mhz=2040,
                   engine_memory_bytes=19 * gib, engine_memory_source="baseline")
    lost = GpuSample(1, "Tesla T4", "T4", status="lost", message="GPU is lost")
    host = HostSample(5.0, 2 * gib, 8 * gib, NA, NA, 1_700_000_000.0)
    snap = Snapshot(1_700_090_000.0, NvmlSnapshot("ok", (ok, lost), driver_version="550.54.15"),
                    EngineMetrics.unavailable("timed out after 2s"), host)
    text = "\n".join(render(snap, "http://127.0.0.1:30000"))
    assert "GPU 0   NVIDIA L4 [L4]  driver 550.54.15" in text
    assert "util  80%  mem-util  40%  n/a  n/a / 72 W  SM 2040 MHz" in text
    assert "VRAM 20.0 GiB / 22.0 GiB  engine 19.0 GiB (baseline)  other 1.0 GiB" in text
    assert "GPU 1   Tesla T4 [T4]" in text and "  GPU lost: GPU is lost" in text
    assert "metrics unavailable: timed out after 2s" in text and "up 1d1h00m" in text
