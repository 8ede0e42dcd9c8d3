"""`--sim-gpu`: a SIMULATED card for the demo, read through the same NvmlSnapshot as NVML's."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from qwentui.telemetry import Nvml, Sampler
from qwentui.telemetry.metrics import parse
from tests.fake_nvml import FakeDevice, FakeNvml
from tests.simproc import running_sim

GiB = 1024 ** 3


def _gpu_readings(sim) -> dict[str, float]:
    metrics = parse(httpx.get(sim.base_url + "/metrics").text)
    assert metrics.available and metrics.sim_gpu_name == "Tesla T4"
    return dict(metrics.sim_gpu)


def test_sim_gpu_publishes_readings_that_follow_the_engine():
    with running_sim("--sim-gpu", "t4", tokens_per_s=300) as sim:
        time.sleep(1.2)  # the warm-up's tokens leave NVML's 1 s utilisation window
        idle = _gpu_readings(sim)
        assert idle["memory_total_bytes"] == 15360 * 1024 ** 2
        assert 10 * GiB < idle["engine_memory_bytes"] < idle["memory_used_bytes"] <= idle["memory_total_bytes"]
        assert idle["utilization_gpu_pct"] == 0 and idle["power_mw"] == 10_000
        done = threading.Event()

        def stream():
            with httpx.stream("POST", sim.base_url + "/v1/chat/completions", timeout=30, json={
                    "messages": [{"role": "user", "content": "x"}], "stream": True, "ignore_eos": True,
                    "max_tokens": 1200}) as r:
                for _ in r.iter_bytes():
                    pass
            done.set()

        threading.Thread(target=stream, daemon=True).start()
        time.sleep(1.5)
        busy = _gpu_readings(sim)
        assert busy["utilization_gpu_pct"] > 30 and busy["power_mw"] > idle["power_mw"]
        assert busy["engine_memory_bytes"] > idle["engine_memory_bytes"]  # workspace + KV in use
        assert busy["clock_sm_mhz"] > idle["clock_sm_mhz"]
        done.wait(10)


def test_unknown_sim_gpu_is_a_usage_error():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "qwentui.sim", "--model-path", "m", "--sim-gpu", "V100"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown --sim-gpu 'V100'" in r.stderr


SIM_GPU_METRICS = """\
sglang:num_running_reqs{model_name="q",engine_type="unified",tp_rank="0",pp_rank="0",moe_ep_rank="0"} 1.0
qwentui_sim_gpu_memory_used_bytes{gpu="0",name="Tesla T4",simulated="true"} 1.2e+10
qwentui_sim_gpu_memory_total_bytes{gpu="0",name="Tesla T4",simulated="true"} 1.610612736e+10
qwentui_sim_gpu_engine_memory_bytes{gpu="0",name="Tesla T4",simulated="true"} 1.1e+10
qwentui_sim_gpu_utilization_gpu_pct{gpu="0",name="Tesla T4",simulated="true"} 63.0
qwentui_sim_gpu_temperature_c{gpu="0",name="Tesla T4",simulated="true"} 51.0
qwentui_sim_gpu_power_mw{gpu="0",name="Tesla T4",simulated="true"} 45000.0
qwentui_sim_gpu_power_limit_mw{gpu="0",name="Tesla T4",simulated="true"} 70000.0
"""


def _sampler(nvml_module, simulated: bool) -> Sampler:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text=SIM_GPU_METRICS))
    return Sampler(base_url="http://127.0.0.1:1", nvml=Nvml(module=nvml_module),
                   client=httpx.AsyncClient(transport=transport), simulated=simulated)


async def test_sampler_shows_the_simulated_card_when_nvml_sees_no_gpu():
    s = _sampler(FakeNvml([]), simulated=True)
    snap = await s.sample_once()
    await s.aclose()
    assert snap.gpu.available and snap.gpu.simulated
    g = snap.gpu.gpus[0]
    assert (g.name, g.gpu_class, g.simulated, g.util_gpu_pct, g.power_mw) == ("Tesla T4", "T4", True, 63, 45000)
    assert g.memory_used_bytes == 12_000_000_000 and g.engine_memory_bytes == 11_000_000_000


@pytest.mark.parametrize("devices,simulated", [([FakeDevice(memory_used=5 * GiB)], True), ([], False)])
async def test_a_real_gpu_or_a_real_engine_never_shows_simulated_readings(devices, simulated):
    s = _sampler(FakeNvml(devices), simulated=simulated)
    snap = await s.sample_once()
    await s.aclose()
    assert not snap.gpu.simulated and all(not g.simulated for g in snap.gpu.gpus)
    assert len(snap.gpu.gpus) == len(devices)


async def test_gpu_pane_labels_the_simulated_card():
    from textual.app import App

    from qwentui.ui.widgets.gpu import GpuCard, GpuPane

    s = _sampler(FakeNvml([]), simulated=True)
    snap = await s.sample_once()
    await s.aclose()

    class Host(App):
        def compose(self):
            yield GpuPane(id="gpu")

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one(GpuPane).snapshot = snap
        await pilot.pause(0.2)
        card = app.query_one(GpuCard)
        assert card.title_line.text.plain == "GPU 0 Tesla T4  SIMULATED"
        assert card.util.bar.suffix.strip() == "63%"
