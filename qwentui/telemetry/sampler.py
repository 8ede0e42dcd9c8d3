"""One sampler: GPU + engine metrics + host → an immutable Snapshot every `telemetry.interval`.

NVML and psutil block, so they run together in one worker thread per tick while the
`/metrics` scrape runs on the loop. Counter totals become rates here, from consecutive
scrapes (SGLang refreshes its gen_throughput gauge only lazily when idle). A failing
scrape backs off (interval, 2x, 4x, ... up to `max_backoff`) and keeps reporting
"unavailable" in between. The sampler never calls `/health`: in SGLang that runs a real
generation and moves the counters the idle watchdog reads.

With `quiet_interval` set (the console and serve use it), an engine that is quiet
(nothing running or queued, no counter moved since the last scrape) is scraped, and
the host read, only every `quiet_interval` seconds; the ticks between repeat those
readings (NVML is still read every tick when there is a GPU). A scrape costs ~4 ms of
CPU, a third of an idle console's budget. Any request seen, a new engine URL or
`hurry()` (the console sending a chat) brings back one scrape per tick.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from qwentui.telemetry.host import Host, HostSample
from qwentui.telemetry.metrics import EngineMetrics, scrape
from qwentui.telemetry.na import NA, Maybe, plain
from qwentui.telemetry.nvml import Nvml, NvmlSnapshot, simulated_snapshot

if TYPE_CHECKING:  # imported where used: not on the console's path to its first frame
    import httpx


@dataclass(frozen=True)
class EngineRates:
    """Per-second rates from the change of SGLang's counters between two scrapes."""

    generation_tokens_per_s: Maybe[float] = NA
    prompt_tokens_per_s: Maybe[float] = NA
    requests_per_s: Maybe[float] = NA


@dataclass(frozen=True)
class Snapshot:
    at: float  # wall-clock time of the sample (clock())
    gpu: NvmlSnapshot
    engine: EngineMetrics
    host: HostSample
    rates: EngineRates = EngineRates()
    simulated: bool = False
    seq: int = 0

    @property
    def tokens_per_s(self) -> Maybe[float]:
        """Generation rate from the counters; SGLang's gauge only until a rate exists."""
        rate = self.rates.generation_tokens_per_s
        return rate if rate is not NA else self.engine.gen_throughput

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "seq": self.seq, "simulated": self.simulated,
                "gpu": self.gpu.to_dict(), "engine": self.engine.to_dict(),
                "rates": plain(asdict(self.rates)), "tokens_per_s": plain(self.tokens_per_s),
                "host": self.host.to_dict()}


# Latency histograms are most of the parsing cost and their lifetime quantiles move slowly.
_HISTOGRAM_EVERY = 10

_RATE_FIELDS = (("generation_tokens_per_s", "generation_tokens_total"),
                ("prompt_tokens_per_s", "prompt_tokens_total"),
                ("requests_per_s", "requests_total"))


def rates_between(prev: EngineMetrics, cur: EngineMetrics, dt: float) -> EngineRates:
    """NA where either scrape lacks the counter, time didn't advance, or a counter went
    down (the engine restarted)."""
    if dt <= 0 or not (prev.available and cur.available):
        return EngineRates()
    out: dict[str, Maybe[float]] = {}
    for rate, total in _RATE_FIELDS:
        a, b = getattr(prev, total), getattr(cur, total)
        out[rate] = NA if a is NA or b is NA or b < a else (b - a) / dt
    return EngineRates(**out)


def local_base_url(host: str, port: int) -> str:
    """URL of an engine bound to host:port from this box (a wildcard bind is reached via loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _no_pids() -> Iterable[int]:
    return ()


class Sampler:
    """Produces Snapshots; `history` is a bounded deque of them, newest last.

    `base_url` may be changed (or set to None when no engine runs) between samples.
    `engine_pids` is called in the worker thread, so it may use psutil.
    """

    def __init__(self, *, base_url: str | None = None, nvml: Nvml | None = None, host: Host | None = None,
                 client: httpx.AsyncClient | None = None, engine_pids: Callable[[], Iterable[int]] = _no_pids,
                 interval: float = 1.0, history: int = 120, simulated: bool = False,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 metrics_timeout: float = 2.0, max_backoff: float = 30.0, quiet_interval: float = 0.0) -> None:
        self.base_url = base_url
        self.nvml = nvml if nvml is not None else Nvml()
        self.host = host if host is not None else Host()
        self._client = client
        self._own_client = client is None
        self.engine_pids = engine_pids
        self.interval = interval
        self.history: deque[Snapshot] = deque(maxlen=history)
        self.simulated = simulated
        self._clock, self._mono = clock, monotonic
        self._timeout = metrics_timeout
        self._max_backoff = max_backoff
        self._failures = 0
        self._retry_at = 0.0
        self._last_metrics: EngineMetrics = EngineMetrics.unavailable("not scraped yet")
        self._last_url: str | None = None
        self._counter_base: tuple[float, EngineMetrics] | None = None
        self._seq = 0
        self._scrapes = 0
        self.quiet_interval = quiet_interval  # 0: scrape every tick
        self._full_at: float | None = None  # monotonic time of the last full sample
        self._pids: list[int] = []

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> "Sampler":
        """interval from telemetry.interval; base URL and SIMULATED from [engine]."""
        e = cfg.engine
        kwargs.setdefault("base_url", local_base_url(e.host, e.port))
        kwargs.setdefault("simulated", e.kind == "sim")
        return cls(interval=cfg.telemetry.interval, **kwargs)

    @property
    def latest(self) -> Snapshot | None:
        return self.history[-1] if self.history else None

    def series(self, value: Callable[[Snapshot], Any]) -> list[float]:
        """One number per snapshot in history (NA → 0.0), e.g. for a sparkline."""
        out = []
        for snap in self.history:
            v = value(snap)
            out.append(0.0 if v is NA or v is None else float(v))
        return out

    async def sample_once(self) -> Snapshot:
        """Take one snapshot now and append it to history. Never raises (except cancellation)."""
        last = self.latest
        if last is not None and self._quiet(last):
            real = last.gpu.gpus and not last.gpu.simulated
            gpu = await asyncio.to_thread(self.nvml.sample, self._pids) if real else last.gpu
            engine, host, rates = last.engine, last.host, last.rates
        else:
            (gpu, host), engine = await asyncio.gather(asyncio.to_thread(self._blocking_part),
                                                       self._engine_metrics())
            self._full_at = now = self._mono()
            rates = self._rates(engine, now)
            gpu = self._simulated_gpu(gpu, engine)
        self._seq += 1
        snap = Snapshot(at=self._clock(), gpu=gpu, engine=engine, host=host, rates=rates,
                        simulated=self.simulated, seq=self._seq)
        self.history.append(snap)
        return snap

    def _simulated_gpu(self, gpu: NvmlSnapshot, engine: EngineMetrics) -> NvmlSnapshot:
        """The simulator's --sim-gpu card stands in only for a simulated engine on a box
        where NVML sees no GPU: a real GPU's readings always win."""
        if not self.simulated or gpu.available or not engine.available or not engine.sim_gpu:
            return gpu
        return simulated_snapshot(engine.sim_gpu_name, engine.sim_gpu)

    def hurry(self) -> None:
        """Scrape at the next tick even if the engine looked quiet (a request is on its way)."""
        self._full_at = None

    def _quiet(self, last: Snapshot) -> bool:
        """Whether this tick may repeat the last scrape and host reading (see the module doc)."""
        if not self.quiet_interval or self._full_at is None or self.base_url != self._last_url:
            return False
        if self._mono() - self._full_at >= self.quiet_interval:
            return False
        engine = last.engine
        if not engine.available or engine.running != 0 or engine.queued != 0:  # NA is not 0
            return False
        moved = (last.rates.generation_tokens_per_s, last.rates.prompt_tokens_per_s, last.rates.requests_per_s)
        return all(rate == 0 for rate in moved)

    def _blocking_part(self) -> tuple[NvmlSnapshot, HostSample]:
        try:
            pids = list(self.engine_pids())
        except Exception:  # noqa: BLE001 - a pid lookup failing just means "unknown"
            pids = []
        self._pids = pids
        gpu = self.nvml.sample(pids)  # never raises
        try:
            host = self.host.sample(pids)
        except Exception:  # noqa: BLE001 - /proc unreadable: report what we can't see as NA
            host = HostSample(cpu_pct=NA, mem_used=NA, mem_total=NA, engine_cpu_pct=NA, engine_rss=NA,
                              boot_time=NA)
        return gpu, host

    async def _engine_metrics(self) -> EngineMetrics:
        url = self.base_url
        if url != self._last_url:  # a new engine: forget backoff and counters
            self._last_url, self._failures, self._retry_at, self._counter_base = url, 0, 0.0, None
            self._scrapes = 0
        if url is None:
            return EngineMetrics.unavailable("engine not running")
        if self._failures and self._mono() < self._retry_at:
            return self._last_metrics
        if self._client is None:
            import httpx  # first scrape: not before an engine runs (keeps it off the first frame)

            self._client = httpx.AsyncClient(trust_env=False)  # loopback: never via a proxy
        with_hist = self._scrapes % _HISTOGRAM_EVERY == 0 or not self._last_metrics.available
        metrics = await scrape(self._client, url, timeout=self._timeout, histograms=with_hist)
        self._scrapes += 1
        if metrics.available and not with_hist:
            metrics = replace(metrics, ttft=self._last_metrics.ttft, e2e=self._last_metrics.e2e)
        self._note(metrics)
        return metrics

    def _note(self, metrics: EngineMetrics) -> None:
        self._last_metrics = metrics
        if metrics.available:
            self._failures = 0
            return
        self._failures += 1
        delay = min(self._max_backoff, self.interval * 2 ** (self._failures - 1))
        self._retry_at = self._mono() + delay

    def _rates(self, engine: EngineMetrics, now: float) -> EngineRates:
        if not engine.available:
            return EngineRates()
        base, self._counter_base = self._counter_base, (now, engine)
        if base is None:
            return EngineRates()
        return rates_between(base[1], engine, now - base[0])

    async def run(self, callback: Callable[[Snapshot], Any]) -> None:
        """Sample every `interval` seconds forever, passing each snapshot to `callback`
        (awaited if it returns an awaitable). Stops when cancelled."""
        next_at = self._mono()
        while True:
            snap = await self.sample_once()
            result = callback(snap)
            if inspect.isawaitable(result):
                await result
            next_at += self.interval
            now = self._mono()
            if next_at < now:  # fell behind (slow scrape, suspended laptop): don't burst
                next_at = now
            await asyncio.sleep(next_at - now)

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        await asyncio.to_thread(self.nvml.close)
