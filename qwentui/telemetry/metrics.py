"""The engine's Prometheus `/metrics` (SGLang names, contracts/sglang.md §7), scraped and parsed.

Series are summed across label sets (`is_streaming`, ranks); fractions are averaged. With
priority scheduling SGLang exports a total series *and* one per priority under the same name
(srt/observability/metrics_collector.py); only the series without a `priority` label is
read, or running/queued would count twice. qwentui's simulator may add `qwentui_sim_gpu_*`
gauges (`--sim-gpu`): a SIMULATED card's NVML-shaped readings, kept apart in `sim_gpu`.
Counters stay raw totals here: the sampler turns consecutive totals into rates. Anything
that is not usable SGLang metrics (404, HTML, garbage, a timeout, a huge body) becomes
`EngineMetrics(available=False, error=...)`; nothing here raises.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from qwentui.telemetry.na import NA, Maybe, plain

if TYPE_CHECKING:  # imported where used: not on the console's path to its first frame
    import httpx

MAX_BYTES = 4 * 1024 * 1024

_SUM_GAUGES = {
    "sglang:num_running_reqs": "running",
    "sglang:num_queue_reqs": "queued",
    "sglang:gen_throughput": "gen_throughput",
    "sglang:num_used_tokens": "used_tokens",
    "sglang:max_total_num_tokens": "max_total_tokens",
}
_MEAN_GAUGES = {
    "sglang:token_usage": "token_usage",
    "sglang:cache_hit_rate": "cache_hit_rate",
}
_MAX_GAUGES = {"sglang:context_len": "context_len"}
_COUNTERS = {
    "sglang:prompt_tokens_total": "prompt_tokens_total",
    "sglang:generation_tokens_total": "generation_tokens_total",
    "sglang:num_requests_total": "requests_total",
    "sglang:num_aborted_requests_total": "aborted_requests_total",
    "sglang:cached_tokens_total": "cached_tokens_total",
}
_HISTOGRAMS = {
    "sglang:time_to_first_token_seconds": "ttft",
    "sglang:e2e_request_latency_seconds": "e2e",
}
SIM_GPU_PREFIX = "qwentui_sim_gpu_"
_SCALARS = tuple(sorted({*_SUM_GAUGES, *_MEAN_GAUGES, *_MAX_GAUGES, *_COUNTERS, SIM_GPU_PREFIX}))
_WANTED = _SCALARS + tuple(sorted(_HISTOGRAMS))


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram summed over label sets."""

    buckets: tuple[tuple[float, float], ...]  # (upper bound "le", cumulative count), ascending
    sum: float = 0.0
    count: float = 0.0

    def quantile(self, q: float) -> Maybe[float]:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
        if not self.buckets or self.count <= 0:
            return NA
        rank = q * self.buckets[-1][1]
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound  # in the overflow bucket: the best we know is its floor
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
            lower_bound, lower_count = bound, count
        return NA


@dataclass(frozen=True)
class EngineMetrics:
    """One scrape. Numbers are NA when the engine doesn't export them."""

    available: bool
    error: str = ""
    running: Maybe[float] = NA
    queued: Maybe[float] = NA
    token_usage: Maybe[float] = NA  # KV-cache fraction in use, 0-1
    gen_throughput: Maybe[float] = NA  # tokens/s at SGLang's last decode log (refreshed lazily)
    cache_hit_rate: Maybe[float] = NA  # prefix-cache hit rate, 0-1
    used_tokens: Maybe[float] = NA
    max_total_tokens: Maybe[float] = NA
    context_len: Maybe[float] = NA
    prompt_tokens_total: Maybe[float] = NA
    generation_tokens_total: Maybe[float] = NA
    requests_total: Maybe[float] = NA
    aborted_requests_total: Maybe[float] = NA
    cached_tokens_total: Maybe[float] = NA
    ttft: Maybe[Histogram] = NA
    e2e: Maybe[Histogram] = NA
    model_name: str = ""
    sim_gpu: tuple[tuple[str, float], ...] = ()  # (reading, value) of a SIMULATED card, if any
    sim_gpu_name: str = ""

    @classmethod
    def unavailable(cls, error: str) -> "EngineMetrics":
        return cls(available=False, error=error)

    def _q(self, hist: Maybe[Histogram], q: float) -> Maybe[float]:
        return hist.quantile(q) if isinstance(hist, Histogram) else NA

    @property
    def ttft_p50_s(self) -> Maybe[float]:
        return self._q(self.ttft, 0.5)

    @property
    def ttft_p95_s(self) -> Maybe[float]:
        return self._q(self.ttft, 0.95)

    @property
    def e2e_p50_s(self) -> Maybe[float]:
        return self._q(self.e2e, 0.5)

    @property
    def e2e_p95_s(self) -> Maybe[float]:
        return self._q(self.e2e, 0.95)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("ttft", "e2e")}
        for name in ("ttft_p50_s", "ttft_p95_s", "e2e_p50_s", "e2e_p95_s"):
            out[name] = getattr(self, name)
        return plain(out)


def _relevant_lines(text: str, wanted: tuple[str, ...]) -> list[str]:
    """Only the series we use: prometheus_client parses ~50 µs a line, and a full SGLang
    page has thousands (a 180 kB page: 105 ms in full, 8 ms filtered, 2 ms without histograms)."""
    return [line for line in text.splitlines() if line.startswith(wanted)]


def _why_not_metrics(text: str) -> str:
    head = text.lstrip()[:200].lower()
    if not head:
        return "empty /metrics response"
    if head.startswith("<"):
        return "not Prometheus text (got HTML)"
    if head.startswith(("{", "[")):
        return "not Prometheus text (got JSON)"
    return "no SGLang metrics in the response (engine started without --enable-metrics?)"


def parse(text: str, *, histograms: bool = True) -> EngineMetrics:
    """SGLang's Prometheus text → EngineMetrics. Never raises.

    `histograms=False` skips the latency histograms (most of the parsing cost); the
    sampler reads them only every few scrapes since lifetime quantiles move slowly.
    """
    lines = _relevant_lines(text, _WANTED if histograms else _SCALARS)
    if not lines:
        return EngineMetrics.unavailable(_why_not_metrics(text))
    from prometheus_client.parser import text_string_to_metric_families  # pulls in http.server: first use

    try:
        families = list(text_string_to_metric_families("\n".join(lines) + "\n"))
    except Exception as exc:  # noqa: BLE001 - prometheus_client raises ValueError/IndexError/...
        return EngineMetrics.unavailable(f"unparseable metrics: {str(exc)[:120]}")
    return _build(s for fam in families for s in fam.samples)


def _build(samples: Any) -> EngineMetrics:
    sums: dict[str, float] = {}
    means: dict[str, list[float]] = {}
    maxes: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    hist_totals: dict[str, float] = {}
    model, sim_gpu, sim_name = "", [], ""
    for s in samples:
        name, value = s.name, float(s.value)
        if math.isnan(value) or "priority" in s.labels:  # per-priority copies of the total series
            continue
        if name.startswith(SIM_GPU_PREFIX):
            sim_gpu.append((name[len(SIM_GPU_PREFIX):], value))
            sim_name = s.labels.get("name", sim_name)
            continue
        model = model or s.labels.get("model_name", "")
        if name in _SUM_GAUGES or name in _COUNTERS:
            sums[name] = sums.get(name, 0.0) + value
        elif name in _MEAN_GAUGES:
            means.setdefault(name, []).append(value)
        elif name in _MAX_GAUGES:
            maxes[name] = max(maxes.get(name, value), value)
        elif name.endswith("_bucket") and name[:-7] in _HISTOGRAMS:
            le = float(s.labels.get("le", "inf"))
            by_le = buckets.setdefault(name[:-7], {})
            by_le[le] = by_le.get(le, 0.0) + value
        elif name.endswith(("_sum", "_count")):
            hist_totals[name] = hist_totals.get(name, 0.0) + value
    values: dict[str, Any] = {}
    values.update({_SUM_GAUGES.get(k) or _COUNTERS[k]: v for k, v in sums.items()})
    values.update({_MEAN_GAUGES[k]: sum(v) / len(v) for k, v in means.items()})
    values.update({_MAX_GAUGES[k]: v for k, v in maxes.items()})
    if not values and not buckets:
        return EngineMetrics.unavailable("no SGLang metrics in the response")
    # Tokenizer-side counters appear only after the first request: absent means zero.
    for attr in _COUNTERS.values():
        values.setdefault(attr, 0.0)
    for base, by_le in buckets.items():
        values[_HISTOGRAMS[base]] = Histogram(tuple(sorted(by_le.items())), hist_totals.get(base + "_sum", 0.0),
                                              hist_totals.get(base + "_count", 0.0))
    return EngineMetrics(available=True, model_name=model, sim_gpu=tuple(sim_gpu), sim_gpu_name=sim_name,
                         **values)


def _http_failure(exc: Exception, timeout: float) -> str:
    import httpx

    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, httpx.ConnectError):
        return "engine not reachable (connection refused)"
    return f"request failed: {type(exc).__name__}: {exc}"[:160]


async def _read_bounded(client: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[int, str, bytes | None]:
    """(status, content type, body); body None when it exceeds max_bytes (we stop reading)."""
    async with client.stream("GET", url) as resp:
        if resp.status_code != 200:
            return resp.status_code, resp.headers.get("content-type", ""), b""
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return resp.status_code, "", None
            chunks.append(chunk)
        return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)


async def scrape(client: httpx.AsyncClient, base_url: str, *, timeout: float = 2.0,
                 max_bytes: int = MAX_BYTES, histograms: bool = True) -> EngineMetrics:
    """GET {base_url}/metrics within `timeout` seconds in total and parse it. Never raises."""
    url = base_url.rstrip("/") + "/metrics"
    try:
        status, ctype, body = await asyncio.wait_for(_read_bounded(client, url, max_bytes), timeout)
    except Exception as exc:  # noqa: BLE001 - every transport failure is "unavailable"
        return EngineMetrics.unavailable(_http_failure(exc, timeout))
    if status == 404:
        return EngineMetrics.unavailable("HTTP 404: engine started without --enable-metrics?")
    if status != 200:
        return EngineMetrics.unavailable(f"HTTP {status} from /metrics")
    if body is None:
        return EngineMetrics.unavailable(f"metrics too large (over {max_bytes // (1024 * 1024)} MB)")
    if "html" in ctype.lower():
        return EngineMetrics.unavailable("not Prometheus text (got HTML)")
    return parse(body.decode("utf-8", errors="replace"), histograms=histograms)
