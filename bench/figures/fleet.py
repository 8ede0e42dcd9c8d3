"""Gateway overhead: the same chat stream read through SGLang's model gateway `smg` and directly.

One simulator; `qwentui`'s Gateway (engine/gateway.py) starts smg in front of it. A raw httpx
SSE reader reads an identical fixed-length stream from the gateway and from the simulator,
interleaved, best of `rounds`. The body names the served model: smg routes by model and
answers 404 `model_not_found` to SGLang's catch-all "default". Skipped (an info line) when smg is not
installed: `pip install 'qwentui[fleet]'`.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from common import MODEL, Ctx, Figure, free_port, running_sim

RATE = 4000  # tok/s, as in figures/chat.py: ~230 SSE chunks/s through the gateway
SMALL = 30  # one-token requests per path for the per-request overhead


def run(ctx: Ctx) -> list[Figure]:
    from qwentui.engine import gateway

    if gateway.find_smg() is None:
        return [Figure("fleet.gateway_overhead", float("nan"), "x", note="skipped: smg not installed "
                       "(pip install 'qwentui[fleet]')")]
    tokens, rounds = ctx.pick(8000, 20000), ctx.pick(2, 3)
    with running_sim(tokens_per_s=RATE) as sim:
        direct, through, chunks, small = asyncio.run(_measure(ctx, sim.base_url, tokens, rounds))
    return [Figure("fleet.gateway_overhead", through / direct, "x", 1.10, "<=",
                   f"chat stream through smg {through:.2f}s vs direct {direct:.2f}s; {tokens} tok at "
                   f"{RATE} tok/s, {chunks} SSE chunks, best of {rounds}"),
            Figure("fleet.request_overhead", (small[1] - small[0]) * 1000, "ms",
                   note=f"median 1-token answer through smg {small[1] * 1000:.1f} ms vs direct "
                   f"{small[0] * 1000:.1f} ms ({SMALL} each)")]


async def _measure(ctx: Ctx, worker: str, tokens: int, rounds: int) -> tuple[float, float, int, tuple]:
    from qwentui.config import FleetConfig
    from qwentui.engine.gateway import Gateway

    fleet = FleetConfig(port=free_port(), metrics_port=free_port(), stop_grace=8.0)
    gw = Gateway(fleet, [worker], log_path=ctx.tmp / "gateway.log")
    await gw.start()
    try:
        await raw_stream(gw.base_url, 64)  # warm both paths' connections and smg's tokenizer
        await raw_stream(worker, 64)
        direct, through, chunks = [], [], 0
        for _ in range(rounds):
            seconds, chunks = await raw_stream(worker, tokens)
            direct.append(seconds)
            seconds, _ = await raw_stream(gw.base_url, tokens)
            through.append(seconds)
        small = (await _small(worker), await _small(gw.base_url))
        return min(direct), min(through), chunks, small
    finally:
        await gw.stop()


async def _small(base_url: str) -> float:
    """Median wall time of SMALL non-streaming one-token answers on one keep-alive connection."""
    import statistics

    body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    times = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as client:
        for _ in range(SMALL):
            t0 = time.perf_counter()
            (await client.post("/v1/chat/completions", json=body)).raise_for_status()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def raw_stream(base_url: str, tokens: int) -> tuple[float, int]:
    """POST a fixed-length streaming chat, read SSE lines until [DONE]: (seconds, data lines)."""
    from qwentui.chat.client import ChatClient

    builder = ChatClient(base_url, model=MODEL)  # only for the request body the console sends
    body = builder.request_body([{"role": "user", "content": "Write a long essay about routers."}],
                                thinking=True, max_tokens=tokens, ignore_eos=True)
    await builder.aclose()
    lines = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=600, trust_env=False) as client:
        t0 = time.perf_counter()
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{base_url} answered {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    lines += 1
                    if line == "data: [DONE]":
                        break
        seconds = time.perf_counter() - t0
    if lines < tokens // 40:
        raise RuntimeError(f"{base_url} sent only {lines} SSE lines for {tokens} tokens")
    return seconds, lines
