"""`/metrics` with SGLang's names and labels (contract §7), via prometheus_client.

Scheduler gauges show what the engine last *published*, as SGLang's do: at each prefill
report, every `--decode-log-interval` decode steps and, when idle, on the scheduler's idle
check (a disagreeing running count at once, otherwise at most every 30 s, gen_throughput
then 0). Tokenizer-side counters and histograms are observed when a request finishes, as
SGLang does. Histogram buckets are SGLang's collector's
(srt/observability/metrics_collector.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from qwentui.sim.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# TokenizerMetricsCollector's default buckets (srt/observability/metrics_collector.py):
# quantiles computed from them (the UI's p50/p95) come out as coarse as on SGLang.
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_E2E_BUCKETS = SGLANG_TTFT_BUCKETS + (600, 1200, 1800, 2400)
_LATENCY_BUCKETS = SGLANG_E2E_BUCKETS + (float("inf"),)
_TTFT_BUCKETS = SGLANG_TTFT_BUCKETS + (float("inf"),)
_TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, float("inf"))
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, float("inf"))


class _SchedulerCollector:
    """Gauges owned by the scheduler; labels model_name, engine_type, tp/pp/moe_ep rank."""

    def __init__(self, engine: "Engine", model_name: str) -> None:
        self.engine = engine
        self.labels = {"model_name": model_name, "engine_type": "unified", "tp_rank": "0",
                       "pp_rank": "0", "moe_ep_rank": "0"}

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(f"sglang:{name}", doc, labels=list(self.labels))
        g.add_metric(list(self.labels.values()), value)
        return g

    def collect(self):
        e = self.engine
        e.idle_check()  # the scheduler's loop would have run it by now (1 s poll when idle)
        g = e.gauges
        used = g["used_tokens"]
        yield self._gauge("num_running_reqs", "The number of running requests.", g["running"])
        yield self._gauge("num_queue_reqs", "The number of requests in the waiting queue.", g["queued"])
        yield self._gauge("num_grammar_queue_reqs", "The number of requests in the grammar waiting queue.", 0)
        yield self._gauge("gen_throughput", "The generation throughput (token/s).", g["gen_throughput"])
        yield self._gauge("token_usage", "The token usage.", g["token_usage"])
        yield self._gauge("num_used_tokens", "The number of used tokens.", used)
        yield self._gauge("kv_used_tokens", "KV cache slots in use.", used)
        yield self._gauge("kv_available_tokens", "KV cache slots available.", e.res.max_total_tokens - used)
        yield self._gauge("kv_evictable_tokens", "KV cache slots evictable.", 0)
        yield self._gauge("cache_hit_rate", "The prefix cache hit rate.", 0.0)
        yield self._gauge("max_total_num_tokens", "Maximum total tokens in the KV pool.", e.res.max_total_tokens)
        yield self._gauge("context_len", "The context length.", e.res.context_len)
        yield self._gauge("page_size", "The page size.", 1)
        yield self._gauge("weight_memory_usage_gb", "Weight memory (GB).", e.res.weight_gb)
        yield self._gauge("kv_cache_memory_usage_gb", "KV cache memory (GB).", e.res.kv_gb)
        yield self._gauge("utilization", "Scheduler utilization.", g["busy"])
        yield self._gauge("is_cuda_graph", "Whether the last batch used CUDA graphs.", g["busy"])
        c = CounterMetricFamily("sglang:realtime_tokens", "Realtime token counts.", labels=[*self.labels, "mode"])
        for mode in ("prefill_compute", "prefill_cache", "decode"):
            c.add_metric([*self.labels.values(), mode], e.realtime_tokens[mode])
        yield c


class SimMetrics:
    """Registry plus the tokenizer-side request metrics."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["model_name", "engine_type", "is_streaming"]
        reg = self.registry
        self.prompt_tokens = Counter("sglang:prompt_tokens", "Number of prefill tokens processed.", labels, registry=reg)
        self.generation_tokens = Counter("sglang:generation_tokens", "Number of generation tokens processed.", labels, registry=reg)
        self.requests = Counter("sglang:num_requests", "Number of requests processed.", labels, registry=reg)
        self.aborted = Counter("sglang:num_aborted_requests", "Number of requests aborted.", ["model_name", "engine_type"], registry=reg)
        self.ttft = Histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels, buckets=_TTFT_BUCKETS, registry=reg)
        self.e2e = Histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", labels, buckets=_LATENCY_BUCKETS, registry=reg)
        self.tpot = Histogram("sglang:request_time_per_output_token_seconds", "Histogram of time per output token in seconds.", labels, buckets=_TPOT_BUCKETS, registry=reg)
        self.prompt_hist = Histogram("sglang:prompt_tokens_histogram", "Histogram of prompt token length.", ["model_name", "engine_type"], buckets=_TOKEN_BUCKETS, registry=reg)
        self.gen_hist = Histogram("sglang:generation_tokens_histogram", "Histogram of generation token length.", ["model_name", "engine_type"], buckets=_TOKEN_BUCKETS, registry=reg)

    def attach(self, engine: "Engine") -> None:
        self.registry.register(_SchedulerCollector(engine, self.model_name))

    def _labels(self, streaming: bool) -> dict:
        return {"model_name": self.model_name, "engine_type": "unified", "is_streaming": "true" if streaming else "false"}

    def first_token(self, streaming: bool, seconds: float) -> None:
        self.ttft.labels(**self._labels(streaming)).observe(seconds)

    def finished(self, streaming: bool, prompt: int, completion: int, seconds: float, aborted: bool) -> None:
        lab = self._labels(streaming)
        self.prompt_tokens.labels(**lab).inc(prompt)
        self.generation_tokens.labels(**lab).inc(completion)
        self.requests.labels(**lab).inc()
        self.e2e.labels(**lab).observe(seconds)
        if completion > 1:
            self.tpot.labels(**lab).observe(seconds / completion)
        base = {"model_name": self.model_name, "engine_type": "unified"}
        self.prompt_hist.labels(**base).observe(prompt)
        self.gen_hist.labels(**base).observe(completion)
        if aborted:
            self.aborted.labels(**base).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def disable_created_series(disable: Callable[[], None] | None = None) -> None:
    """SGLang's multiprocess registry exposes no `_created` samples; match it."""
    from prometheus_client import disable_created_metrics

    (disable or disable_created_metrics)()
