"""An idle console does little: quiet-engine sampling, the cached process tree, panes that
skip work while hidden or unchanged, and the demo's simulated T4 price."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from types import SimpleNamespace

import httpx
from textual.app import App, ComposeResult

from qwentui.config import Config
from qwentui.runtime.core import PIDS_TTL, Runtime
from qwentui.telemetry import Nvml, NvmlSnapshot, Sampler
from qwentui.ui.widgets.cost import CostPane, _span
from qwentui.ui.widgets.gpu import GpuPane, Line
from tests.fake_nvml import FakeNvml
from tests.test_cost_pane import BASE
from tests.test_gpu_pane import snap as gpu_snap
from tests.test_runtime import BOOT, Clock, FakeSupervisor

M = 'model_name="Qwen/Qwen3-1.7B"'


def metrics_text(running: int = 0, generated: int = 500) -> str:
    return "\n".join([
        "# TYPE sglang:num_running_reqs gauge", f"sglang:num_running_reqs{{{M}}} {running}.0",
        "# TYPE sglang:num_queue_reqs gauge", f"sglang:num_queue_reqs{{{M}}} 0.0",
        "# TYPE sglang:generation_tokens_total counter", f"sglang:generation_tokens_total{{{M}}} {generated}.0",
        "# TYPE sglang:prompt_tokens_total counter", f"sglang:prompt_tokens_total{{{M}}} 100.0",
        "# TYPE sglang:num_requests_total counter", f"sglang:num_requests_total{{{M}}} 3.0", ""])


class Engine:
    def __init__(self) -> None:
        self.scrapes = 0
        self.running, self.generated = 0, 500

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.scrapes += 1
        return httpx.Response(200, text=metrics_text(self.running, self.generated))


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def quiet_sampler(engine: Engine, mono: Mono, **kw) -> Sampler:
    client = httpx.AsyncClient(transport=httpx.MockTransport(engine.handler))
    return Sampler(base_url="http://127.0.0.1:1", nvml=Nvml(module=FakeNvml(devices=[])), client=client,
                   monotonic=mono, clock=lambda: 1_700_000_000.0, quiet_interval=5.0, **kw)


# -- sampler: a quiet engine is scraped every quiet_interval, a busy one every tick ----------

async def test_quiet_engine_is_scraped_every_quiet_interval_busy_every_tick():
    engine, mono = Engine(), Mono()
    s = quiet_sampler(engine, mono)
    seqs = []
    for _ in range(12):  # 1st: no rates yet, 2nd: rates 0 → quiet from the 3rd tick on
        seqs.append((await s.sample_once()).seq)
        mono.now += 1.0
    assert seqs == list(range(1, 13))  # a snapshot every tick all the same
    assert engine.scrapes == 4  # ticks 1, 2, then every 5 s: 7, 12
    assert s.latest.engine.running == 0 and s.latest.tokens_per_s == 0
    engine.generated += 300  # someone else's request, seen at the next full scrape
    before = engine.scrapes
    for _ in range(5):
        await s.sample_once()
        mono.now += 1.0
    assert engine.scrapes == before + 1 and s.latest.rates.generation_tokens_per_s == 60.0  # 300 over 5 s
    engine.running = 1  # busy: every tick again
    for _ in range(3):
        await s.sample_once()
        mono.now += 1.0
    assert engine.scrapes == before + 4


async def test_hurry_and_a_new_url_scrape_at_once():
    engine, mono = Engine(), Mono()
    s = quiet_sampler(engine, mono)
    for _ in range(3):
        await s.sample_once()
        mono.now += 1.0
    assert engine.scrapes == 2  # the third tick was quiet
    s.hurry()
    await s.sample_once()
    assert engine.scrapes == 3
    s.base_url = "http://127.0.0.1:2"
    await s.sample_once()
    assert engine.scrapes == 4


async def test_without_quiet_interval_every_tick_scrapes():
    engine, mono = Engine(), Mono()
    s = quiet_sampler(engine, mono)
    s.quiet_interval = 0.0
    for _ in range(4):
        await s.sample_once()
        mono.now += 1.0
    assert engine.scrapes == 4


# -- runtime: cached process tree, the demo price -------------------------------------------

class CountingSupervisor(FakeSupervisor):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.pid_calls = 0

    def pids(self) -> list[int]:
        self.pid_calls += 1
        return [4242]


def test_engine_pids_are_reread_every_ttl_and_after_an_engine_change():
    clock, sup = Clock(), CountingSupervisor()
    rt = Runtime(Config(), sup, sampler=SimpleNamespace(nvml=None), clock=clock, wall=clock.wall,
                 boot_time=BOOT, ledger=None)
    assert rt.engine_pids() == [4242] and rt.engine_pids() == [4242] and sup.pid_calls == 1
    clock.t += PIDS_TTL
    rt.engine_pids()
    assert sup.pid_calls == 2
    sup._set(phase="ready")  # any engine status change
    rt.engine_pids()
    assert sup.pid_calls == 3


class NoGpuSampler:
    """A telemetry-shaped sampler whose NVML reports `status` (and no GPU unless given)."""

    nvml = None

    def __init__(self, status: str = "no-nvml", gpus: tuple = ()) -> None:
        self.gpu = SimpleNamespace(status=status, gpus=gpus)
        self.history: list = []
        self.base_url = None

    async def sample_once(self):
        engine = SimpleNamespace(available=False)
        snap = SimpleNamespace(gpu=self.gpu, engine=engine, seq=len(self.history) + 1)
        self.history.append(snap)
        return snap


def demo_runtime(cfg: Config, sup: FakeSupervisor, sampler=None) -> Runtime:
    clock = Clock()
    return Runtime(cfg, sup, sampler=sampler or NoGpuSampler(), clock=clock, wall=clock.wall, boot_time=BOOT,
                   ledger=None)


def sim_cfg(**cost) -> Config:
    base = Config()
    return dataclasses.replace(base, engine=dataclasses.replace(base.engine, kind="sim"),
                               cost=dataclasses.replace(base.cost, **cost))


async def test_demo_without_a_gpu_is_priced_as_a_simulated_t4():
    rt = demo_runtime(sim_cfg(), FakeSupervisor())
    assert rt.meter.snapshot().rate_per_hour is None
    snap = await rt.step()
    assert snap.cost.rate_per_hour == Decimal("1.8") and snap.cost.gpu_class == "T4"
    assert snap.cost.gpu_model == "T4 (SIMULATED)"
    app = _CostHost(snap.cost)
    async with app.run_test(size=(80, 24)):
        text = app.query_one(CostPane).render().plain.splitlines()
    assert text[0] == "COST ¥1.8/h · T4 · instance billing"
    assert text[1] == "SIMULATED: priced as a T4, no GPU here"


async def test_real_engines_set_prices_and_seen_gpus_never_get_the_made_up_price():
    sglang = dataclasses.replace(Config(), engine=dataclasses.replace(Config().engine, kind="sglang"))
    real = FakeSupervisor()
    real.status = dataclasses.replace(real.status, kind="sglang", simulated=False)
    cases = [
        (sglang, real, NoGpuSampler(), None, None),  # a real engine without NVML: price unknown
        (sim_cfg(price_per_hour=2.0), FakeSupervisor(), NoGpuSampler(), Decimal("2.0"), None),  # configured
        (sim_cfg(), FakeSupervisor(), NoGpuSampler("error"), None, None),  # NVML broken: not "no GPU"
        (sim_cfg(), FakeSupervisor(), NoGpuSampler("ok", (SimpleNamespace(name="NVIDIA L4", gpu_class="L4"),)),
         Decimal("2.5"), "NVIDIA L4"),  # the simulator on a real GPU box: that GPU's price
    ]
    for cfg, sup, sampler, rate, model in cases:
        snap = await demo_runtime(cfg, sup, sampler).step()
        assert snap.cost.rate_per_hour == rate and snap.cost.gpu_model == model, (cfg.engine.kind, sampler.gpu)


# -- panes: no work while hidden, repaint only on a visible change --------------------------

from tests.test_cost_pane import _Host as _CostHost  # noqa: E402 - the cost pane test host


def test_running_clocks_are_shown_to_the_minute():
    assert [_span(s) for s in (0, 13, 59.9, 60, 2725, 4500, 90061)] == [
        "0m", "<1m", "<1m", "1m", "45m", "1h15m", "25h1m"]


async def test_cost_pane_repaints_only_when_its_text_changes(monkeypatch):
    painted = []
    original = CostPane.refresh

    def counting(self, *args, **kwargs):
        painted.append(kwargs.get("layout", False))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CostPane, "refresh", counting)
    app = _CostHost(BASE)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(CostPane)
        await pilot.pause()
        painted.clear()
        for seconds in (1, 2, 3):  # the clocks moved by seconds, no cent changed
            pane.snapshot = dataclasses.replace(BASE, engine_seconds=2700.0 + seconds, box_seconds=4500.0 + seconds,
                                                idle_seconds=420.0 + seconds)
            await pilot.pause()
        assert painted == []
        pane.snapshot = dataclasses.replace(BASE, session_cost=Decimal("2.26"))
        await pilot.pause()
        assert painted == [False]  # one repaint, same height: no layout
        assert pane.render().plain.splitlines()[1].startswith("session    ¥2.26")


class _Tabs(App):
    """Both panes, hidden until shown, as on an 80×24 console."""

    CSS = ".hidden { display: none; }"

    def compose(self) -> ComposeResult:
        yield GpuPane(id="gpu", classes="hidden")
        yield CostPane(id="cost", classes="hidden")


async def test_hidden_panes_do_no_work_and_catch_up_when_shown():
    app = _Tabs()
    async with app.run_test(size=(80, 24)) as pilot:
        gpu, cost = app.query_one(GpuPane), app.query_one(CostPane)
        for seq in (1, 2, 3):
            gpu.snapshot = gpu_snap(NvmlSnapshot("no-nvml", message="x"), simulated=True, seq=seq)
            cost.snapshot = BASE
            await pilot.pause()
        assert "waiting" in gpu.query_one("#gpu-state", Line).text.plain  # rows not touched
        assert len(gpu._tps) == 3  # but the sparkline history goes on
        assert cost._shown is None
        gpu.remove_class("hidden")
        cost.remove_class("hidden")
        await pilot.pause()
        await pilot.pause()
        assert gpu.query_one("#gpu-state", Line).text.plain == "no GPU detected (simulated engine)"
        assert cost._shown is not None and cost._shown.plain.startswith("COST ¥1.8/h")
        assert cost.size.height == len(cost.render().plain.splitlines())
