"""/metrics parsing and scraping: real SGLang text (contract §7), and every bad body."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from qwentui.telemetry import NA, Histogram, parse, scrape

M = 'engine_type="unified",model_name="Qwen/Qwen3-1.7B",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
T = 'engine_type="unified",is_streaming="{s}",model_name="Qwen/Qwen3-1.7B"'


def _hist(name: str, bounds: list[float], counts: dict[str, list[float]], sums: dict[str, float]) -> str:
    out = [f"# HELP {name} Histogram of {name}.", f"# TYPE {name} histogram"]
    for s, cum in counts.items():
        labels = T.format(s=s)
        for le, c in zip([*map(str, bounds), "+Inf"], cum):
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {c}')
        out.append(f"{name}_count{{{labels}}} {cum[-1]}")
        out.append(f"{name}_sum{{{labels}}} {sums[s]}")
    return "\n".join(out)


# What SGLang 0.5.23 serves (prometheus_client multiprocess registry: no _created series,
# counters with _total, scheduler vs tokenizer labels as in the contract), trimmed.
SGLANG_METRICS = "\n".join([
    "# HELP sglang:num_running_reqs The number of running requests.",
    "# TYPE sglang:num_running_reqs gauge",
    f"sglang:num_running_reqs{{{M}}} 3.0",
    "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.",
    "# TYPE sglang:num_queue_reqs gauge",
    f"sglang:num_queue_reqs{{{M}}} 1.0",
    "# HELP sglang:num_grammar_queue_reqs The number of requests in the grammar waiting queue.",
    "# TYPE sglang:num_grammar_queue_reqs gauge",
    f"sglang:num_grammar_queue_reqs{{{M}}} 0.0",
    "# HELP sglang:num_used_tokens The number of used tokens.",
    "# TYPE sglang:num_used_tokens gauge",
    f"sglang:num_used_tokens{{{M}}} 5120.0",
    "# HELP sglang:token_usage The token usage.",
    "# TYPE sglang:token_usage gauge",
    f"sglang:token_usage{{{M}}} 0.41",
    "# HELP sglang:gen_throughput The generation throughput (token/s).",
    "# TYPE sglang:gen_throughput gauge",
    f"sglang:gen_throughput{{{M}}} 512.3",
    "# HELP sglang:cache_hit_rate The prefix cache hit rate.",
    "# TYPE sglang:cache_hit_rate gauge",
    f"sglang:cache_hit_rate{{{M}}} 0.25",
    "# HELP sglang:max_total_num_tokens Maximum total number of tokens in the KV pool.",
    "# TYPE sglang:max_total_num_tokens gauge",
    f"sglang:max_total_num_tokens{{{M}}} 12488.0",
    "# HELP sglang:context_len The context length.",
    "# TYPE sglang:context_len gauge",
    f"sglang:context_len{{{M}}} 40960.0",
    "# HELP sglang:startup_time_seconds Startup time by phase.",
    "# TYPE sglang:startup_time_seconds gauge",
    f'sglang:startup_time_seconds{{{M},phase="load_weight"}} 4.21',
    "# HELP sglang:prompt_tokens_total Number of prefill tokens processed.",
    "# TYPE sglang:prompt_tokens_total counter",
    f"sglang:prompt_tokens_total{{{T.format(s='true')}}} 1800.0",
    f"sglang:prompt_tokens_total{{{T.format(s='false')}}} 200.0",
    "# HELP sglang:generation_tokens_total Number of generation tokens processed.",
    "# TYPE sglang:generation_tokens_total counter",
    f"sglang:generation_tokens_total{{{T.format(s='true')}}} 9000.0",
    f"sglang:generation_tokens_total{{{T.format(s='false')}}} 1000.0",
    "# HELP sglang:num_requests_total Number of requests processed.",
    "# TYPE sglang:num_requests_total counter",
    f"sglang:num_requests_total{{{T.format(s='true')}}} 18.0",
    f"sglang:num_requests_total{{{T.format(s='false')}}} 2.0",
    "# HELP sglang:cached_tokens_total Number of cached prompt tokens.",
    "# TYPE sglang:cached_tokens_total counter",
    'sglang:cached_tokens_total{cache_source="device",engine_type="unified",model_name="Qwen/Qwen3-1.7B"} 300.0',
    "# HELP sglang:num_aborted_requests_total Number of requests aborted.",
    "# TYPE sglang:num_aborted_requests_total counter",
    'sglang:num_aborted_requests_total{engine_type="unified",model_name="Qwen/Qwen3-1.7B"} 1.0',
    _hist("sglang:time_to_first_token_seconds", [0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0],
          {"true": [9, 12, 15, 16, 16, 17, 17, 18, 18], "false": [1, 1, 2, 2, 2, 2, 2, 2, 2]},
          {"true": 7.2, "false": 0.42}),
    _hist("sglang:e2e_request_latency_seconds", [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
          {"true": [0, 1, 12, 16, 18, 18, 18], "false": [0, 0, 1, 2, 2, 2, 2]},
          {"true": 91.0, "false": 6.6}),
    "# HELP sglang:http_requests_total Total number of HTTP requests by endpoint and method",
    "# TYPE sglang:http_requests_total counter",
    'sglang:http_requests_total{endpoint="/v1/chat/completions",method="POST"} 20.0',
]) + "\n"


def test_parse_real_sglang_text():
    m = parse(SGLANG_METRICS)
    assert m.available and m.error == "" and m.model_name == "Qwen/Qwen3-1.7B"
    assert (m.running, m.queued, m.token_usage, m.gen_throughput) == (3, 1, 0.41, 512.3)
    assert (m.cache_hit_rate, m.used_tokens, m.max_total_tokens, m.context_len) == (0.25, 5120, 12488, 40960)
    # counters summed over is_streaming / cache_source
    assert (m.prompt_tokens_total, m.generation_tokens_total, m.requests_total) == (2000, 10000, 20)
    assert (m.cached_tokens_total, m.aborted_requests_total) == (300, 1)
    assert isinstance(m.ttft, Histogram) and m.ttft.count == 20
    assert m.ttft.buckets[0] == (0.1, 10) and m.ttft.buckets[-1][0] == float("inf")
    assert m.ttft_p50_s == pytest.approx(0.1)  # rank 10 of 20 sits exactly at the first bound
    assert m.ttft_p95_s == pytest.approx(1.0)  # rank 19: bucket (0.8, 1.0] holds counts 18..19
    assert m.e2e_p50_s == pytest.approx(2.0 + 2.0 * (10 - 1) / 12)
    assert m.e2e_p95_s == pytest.approx(12.0)
    d = m.to_dict()
    assert json.dumps(d) and d["running"] == 3 and "ttft" not in d and d["e2e_p95_s"] is not None


def test_parse_sums_gauges_across_ranks_and_averages_fractions():
    text = "\n".join([
        'sglang:num_running_reqs{tp_rank="0",dp_rank="0"} 2', 'sglang:num_running_reqs{tp_rank="0",dp_rank="1"} 3',
        'sglang:token_usage{dp_rank="0"} 0.2', 'sglang:token_usage{dp_rank="1"} 0.4',
    ]) + "\n"
    m = parse(text)
    assert m.running == 5 and m.token_usage == pytest.approx(0.3)


def test_before_first_request_counters_are_zero_and_histograms_na():
    m = parse(f"sglang:num_running_reqs{{{M}}} 0.0\nsglang:token_usage{{{M}}} 0.0\n")
    assert m.available and m.generation_tokens_total == 0 and m.requests_total == 0
    assert m.ttft is NA and m.ttft_p50_s is NA and m.gen_throughput is NA


def test_parse_without_histograms():
    m = parse(SGLANG_METRICS, histograms=False)
    assert m.available and m.ttft is NA and m.running == 3


def test_histogram_quantile_edges():
    h = Histogram(((1.0, 0.0), (2.0, 10.0), (float("inf"), 20.0)), 0, 20)
    assert h.quantile(0.25) == pytest.approx(1.5)
    assert h.quantile(0.99) == 2.0  # in +Inf: the last finite bound
    assert Histogram((), 0, 0).quantile(0.5) is NA


@pytest.mark.parametrize("body, words", [
    ("<!DOCTYPE html><html><body>Welcome to nginx</body></html>", "HTML"),
    ('{"detail":"Not Found"}', "JSON"),
    ("", "empty"),
    ("hello world\nfoo 1 2 3\n", "no SGLang metrics"),
    ("# HELP x y\n# TYPE x gauge\nx 1\n", "no SGLang metrics"),
    ('sglang:num_running_reqs{oops 3\n', "unparseable"),
    ("sglang:num_running_reqs three\n", "unparseable"),
    ("\x00\xff" * 100, "no SGLang metrics"),
])
def test_parse_garbage_is_unavailable(body, words):
    m = parse(body)
    assert not m.available and words in m.error and m.running is NA


def test_parse_is_cheap():
    """Once a second, every second: keep it far below a millisecond budget per kilobyte."""
    filler = "".join(f'sglang:other_{i}_bucket{{le="{j}"}} {j}\n' for i in range(100) for j in range(20))
    text = SGLANG_METRICS + filler
    parse(text, histograms=False)
    start = time.perf_counter()
    for _ in range(20):
        parse(text, histograms=False)
    per = (time.perf_counter() - start) / 20
    assert per < 0.02, f"{per * 1000:.1f} ms per parse"


# -- scraping over real loopback HTTP ----------------------------------------------------

class _Server:
    """A raw asyncio HTTP server with one behaviour per path prefix."""

    def __init__(self) -> None:
        self.sent = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> "_Server":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            kind = request.split(b" ")[1].decode().split("/")[1]
            await getattr(self, f"_{kind}")(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _send(self, writer, status: str, ctype: str, body: bytes) -> None:
        writer.write(f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                     "connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    async def _ok(self, w):
        await self._send(w, "200 OK", "text/plain; version=0.0.4; charset=utf-8", SGLANG_METRICS.encode())

    async def _notfound(self, w):
        await self._send(w, "404 Not Found", "application/json", b'{"detail":"Not Found"}')

    async def _unauthorized(self, w):
        await self._send(w, "401 Unauthorized", "application/json", b'{"error":"Unauthorized"}')

    async def _html(self, w):
        await self._send(w, "200 OK", "text/html", b"<html><body>proxy login</body></html>")

    async def _garbage(self, w):
        await self._send(w, "200 OK", "text/plain", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)

    async def _slow(self, w):
        await asyncio.sleep(30)

    async def _trickle(self, w):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n")
        for _ in range(100):
            w.write(b"sglang:num_running_reqs 1\n"[:10])
            await w.drain()
            await asyncio.sleep(0.1)

    async def _huge(self, w):
        """A 100 MB body; counts what actually left before the client hung up."""
        total = 100 * 1024 * 1024
        w.write(f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\n\r\n".encode())
        chunk = (f"sglang:num_running_reqs{{{M}}} 1.0\n".encode() * 2000)[:65536]
        while self.sent < total:
            w.write(chunk)
            self.sent += len(chunk)
            await w.drain()


@pytest.fixture
async def server():
    async with _Server() as s:
        yield s


@pytest.fixture
async def client():
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


async def test_scrape_ok(server, client):
    m = await scrape(client, server.url("ok"))
    assert m.available and m.running == 3 and m.generation_tokens_total == 10000


@pytest.mark.parametrize("kind, words", [
    ("notfound", "HTTP 404: engine started without --enable-metrics"),
    ("unauthorized", "HTTP 401"),
    ("html", "got HTML"),
    ("garbage", "no SGLang metrics"),
])
async def test_scrape_bad_responses(server, client, kind, words):
    m = await scrape(client, server.url(kind))
    assert not m.available and words in m.error


async def test_scrape_timeout_waiting_for_headers(server, client):
    start = time.monotonic()
    m = await scrape(client, server.url("slow"), timeout=0.3)
    assert not m.available and m.error == "timed out after 0.3s"
    assert time.monotonic() - start < 2


async def test_scrape_total_timeout_bounds_a_trickling_body(server, client):
    start = time.monotonic()
    m = await scrape(client, server.url("trickle"), timeout=0.5)
    assert not m.available and "timed out" in m.error
    assert time.monotonic() - start < 2


async def test_scrape_100mb_body_is_bounded(server, client):
    m = await scrape(client, server.url("huge"), max_bytes=4 * 1024 * 1024, timeout=10)
    assert not m.available and m.error == "metrics too large (over 4 MB)"
    await asyncio.sleep(0.2)
    assert server.sent < 16 * 1024 * 1024, f"server pushed {server.sent} bytes"


async def test_scrape_connection_refused(client):
    from tests.conftest import free_port

    m = await scrape(client, f"http://127.0.0.1:{free_port()}")
    assert not m.available and "not reachable" in m.error


def test_priority_scheduling_reads_the_total_series_only():
    """SGLang exports the total and one series per priority under one name
    (srt/observability/metrics_collector.py); summing them doubled running/queued."""
    labels = 'model_name="q",engine_type="unified",tp_rank="0",pp_rank="0",moe_ep_rank="0"'
    text = "\n".join([
        f"sglang:num_running_reqs{{{labels}}} 3.0",
        f'sglang:num_running_reqs{{{labels},priority="0"}} 1.0',
        f'sglang:num_running_reqs{{{labels},priority="5"}} 2.0',
        f"sglang:num_queue_reqs{{{labels}}} 4.0",
        f'sglang:num_queue_reqs{{{labels},priority="5"}} 4.0',
        f"sglang:token_usage{{{labels}}} 0.5",
        f'sglang:token_usage{{{labels},priority="5"}} 0.1',
    ]) + "\n"
    m = parse(text)
    assert (m.running, m.queued, m.token_usage) == (3.0, 4.0, 0.5)
