"""Sampler (snapshots, rates, backoff, history, threads) and host stats."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from qwentui.config import Config
from qwentui.telemetry import NA, EngineMetrics, Host, Nvml, Sampler, Snapshot, rates_between
from qwentui.telemetry.host import process_tree
from tests.fake_nvml import FakeDevice, FakeNvml
from tests.test_telemetry_metrics import SGLANG_METRICS

GiB = 1024**3


class Engine:
    """A scripted /metrics endpoint behind httpx.MockTransport; records every path asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.generated = 10000
        self.status = 200
        self.body: str | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "Not Found"})
        body = self.body if self.body is not None else SGLANG_METRICS.replace(
            "} 9000.0", f"}} {self.generated - 1000}.0")
        return httpx.Response(200, text=body, headers={"content-type": "text/plain; version=0.0.4"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine():
    return Engine()


def make(engine: Engine, fake: FakeNvml | None = None, clock: Clock | None = None, **kw) -> Sampler:
    return Sampler(base_url="http://127.0.0.1:1", nvml=Nvml(module=fake or FakeNvml()), client=engine.client(),
                   monotonic=clock or Clock(), clock=lambda: 1_700_000_000.0, **kw)


async def test_snapshot_combines_sources(engine):
    fake = FakeNvml([FakeDevice(memory_used=18 * GiB, processes=[(os.getpid(), 17 * GiB)])])
    s = make(engine, fake, engine_pids=lambda: [os.getpid()], simulated=True)
    snap = await s.sample_once()
    assert isinstance(snap, Snapshot) and snap.seq == 1 and snap.at == 1_700_000_000.0 and snap.simulated
    assert snap.gpu.gpus[0].engine_memory_bytes == 17 * GiB
    assert snap.engine.available and snap.engine.running == 3
    assert snap.host.engine_procs == 1 and snap.host.engine_rss > 0
    assert snap.rates.generation_tokens_per_s is NA and snap.tokens_per_s == 512.3  # gauge until a rate exists
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.seq = 2  # type: ignore[misc]
    assert json.loads(json.dumps(snap.to_dict()))["engine"]["running"] == 3


async def test_rates_from_counters(engine):
    clock = Clock()
    s = make(engine, clock=clock)
    await s.sample_once()
    clock.now += 2.0
    engine.generated += 1000
    snap = await s.sample_once()
    assert snap.rates.generation_tokens_per_s == pytest.approx(500.0)
    assert snap.rates.prompt_tokens_per_s == 0.0 and snap.rates.requests_per_s == 0.0
    assert snap.tokens_per_s == pytest.approx(500.0)  # the counter rate wins over the lazy gauge


async def test_counter_reset_gives_no_rate(engine):
    clock = Clock()
    s = make(engine, clock=clock)
    await s.sample_once()
    clock.now += 1
    engine.generated = 1500  # engine restarted: counters start over
    snap = await s.sample_once()
    assert snap.rates.generation_tokens_per_s is NA


def test_rates_between_needs_both_and_time():
    a, b = EngineMetrics(True, generation_tokens_total=10.0), EngineMetrics(True, generation_tokens_total=30.0)
    assert rates_between(a, b, 2).generation_tokens_per_s == 10
    assert rates_between(a, b, 0).generation_tokens_per_s is NA
    assert rates_between(a, EngineMetrics.unavailable("x"), 1).generation_tokens_per_s is NA


async def test_metrics_failure_backs_off_and_recovers(engine):
    clock = Clock()
    s = make(engine, clock=clock, interval=1.0, max_backoff=4.0)
    engine.status = 404
    delays = []
    for _ in range(12):
        before = len(engine.paths)
        snap = await s.sample_once()
        assert not snap.engine.available and "404" in snap.engine.error
        if len(engine.paths) > before:
            delays.append(clock.now)
        clock.now += 1.0
    assert [d - 100 for d in delays] == [0, 1, 3, 7, 11]  # 1, 2, 4, then capped at 4
    engine.status = 200
    clock.now = delays[-1] + 4
    assert (await s.sample_once()).engine.available
    clock.now += 1
    assert (await s.sample_once()).engine.available and len(engine.paths) == 7  # back to every tick


async def test_never_calls_health(engine):
    s = make(engine)
    for _ in range(12):
        await s.sample_once()
    assert set(engine.paths) == {"/metrics"}


async def test_no_engine_url(engine):
    s = make(engine)
    s.base_url = None
    snap = await s.sample_once()
    assert not snap.engine.available and snap.engine.error == "engine not running" and engine.paths == []


async def test_histograms_parsed_every_tenth_scrape_and_carried(engine):
    s = make(engine)
    snaps = [await s.sample_once() for _ in range(11)]
    assert all(x.engine.ttft_p50_s == pytest.approx(0.1) for x in snaps)
    engine.body = SGLANG_METRICS.replace('le="0.1"} 9', 'le="0.1"} 0')
    assert (await s.sample_once()).engine.ttft_p50_s == pytest.approx(0.1)  # carried over
    for _ in range(8):
        snap = await s.sample_once()
    assert snap.engine.ttft_p50_s == pytest.approx(0.1)  # 20th scrape: still carried
    snap = await s.sample_once()
    assert snap.engine.ttft_p50_s == pytest.approx(0.175)  # 21st: read again


async def test_history_is_bounded_and_series(engine):
    fake = FakeNvml([FakeDevice(util_gpu=0)])
    s = make(engine, fake, history=5)
    for i in range(8):
        fake.devices[0].util_gpu = i * 10
        await s.sample_once()
    assert len(s.history) == 5 and s.latest.seq == 8
    assert s.series(lambda x: x.gpu.gpus[0].util_gpu_pct) == [30, 40, 50, 60, 70]
    assert s.series(lambda x: NA) == [0.0] * 5


async def test_run_loop_samples_off_the_event_loop_thread(engine):
    fake = FakeNvml()
    s = Sampler(base_url="http://127.0.0.1:1", nvml=Nvml(module=fake), client=engine.client(), interval=0.02)
    got: list[Snapshot] = []

    async def callback(snap: Snapshot) -> None:
        got.append(snap)

    task = asyncio.create_task(s.run(callback))
    while len(got) < 4:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [g.seq for g in got[:4]] == [1, 2, 3, 4]
    assert fake.threads and threading.get_ident() not in fake.threads
    await s.aclose()
    assert fake.shutdown_calls == 1


async def test_no_gpu_box_stays_cheap(engine):
    """GPU-less box at 1 Hz: NVML init tried once, and a sample costs little CPU."""
    fake = FakeNvml([])
    s = make(engine, fake)
    await s.sample_once()
    start = time.process_time()
    for _ in range(30):
        await s.sample_once()
    per = (time.process_time() - start) / 30
    assert fake.init_calls == 1
    assert per < 0.01, f"{per * 1000:.1f} ms CPU per sample"


def test_from_config():
    cfg = Config()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="sim", port=31234),
                              telemetry=dataclasses.replace(cfg.telemetry, interval=2.5))
    s = Sampler.from_config(cfg, nvml=Nvml(module=FakeNvml()))
    assert (s.base_url, s.interval, s.simulated) == ("http://127.0.0.1:31234", 2.5, True)


# -- host --------------------------------------------------------------------------------

def test_host_sample_with_engine_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = Host()
        pids = process_tree(os.getpid())
        assert os.getpid() in pids and child.pid in pids
        first = host.sample(pids)
        assert first.cpu_pct is NA and first.engine_cpu_pct is NA  # nothing to compare with yet
        assert first.boot_time == psutil.boot_time() and 0 < first.mem_used < first.mem_total
        sum(range(200_000))
        second = host.sample(pids)
        assert isinstance(second.cpu_pct, float) and second.engine_cpu_pct >= 0
        assert second.engine_procs == len(pids) and second.engine_rss > 0
        child.kill()
        child.wait()
        third = host.sample(pids)
        assert third.engine_procs == len(pids) - 1
    finally:
        child.kill()
        child.wait()


def test_host_without_engine_and_with_dead_pids():
    host = Host()
    assert host.sample([]).engine_rss is NA
    assert host.sample([2**22 + 12345]).engine_procs == 0
    assert process_tree(2**22 + 12345) == []


async def test_host_failure_is_na_not_a_crash(engine):
    class Broken(Host):
        def sample(self, engine_pids=()):
            raise PermissionError("/proc hidden")

    s = make(engine, host=Broken())
    snap = await s.sample_once()
    assert snap.host.mem_total is NA and snap.host.boot_time is NA and snap.engine.available


def test_local_base_url():
    from qwentui.telemetry.sampler import local_base_url

    assert local_base_url("0.0.0.0", 30000) == "http://127.0.0.1:30000"
    assert local_base_url("::1", 8) == "http://[::1]:8" and local_base_url("::", 8) == "http://[::1]:8"
