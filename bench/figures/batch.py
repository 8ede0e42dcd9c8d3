"""Batch: `qwentui batch`'s machinery (BatchRunner + Sender + output file) vs a bare
asyncio httpx client at the same concurrency, and vs itself at concurrency 1.
The measuring code is bench/batch_measure.py (best of `rounds`, interleaved)."""

from __future__ import annotations

import asyncio

import batch_measure
from common import Ctx, Figure, running_sim

RATE = 1000  # tok/s per request: short requests, so client overhead shows
CONCURRENCY = 8
MAX_TOKENS = 64


def run(ctx: Ctx) -> list[Figure]:
    requests, rounds = ctx.pick((32, 2), (128, 3))
    with running_sim(tokens_per_s=RATE) as sim:
        out = asyncio.run(batch_measure.compare(sim.base_url, requests=requests, concurrency=CONCURRENCY,
                                                max_tokens=MAX_TOKENS, rounds=rounds))
    raw, batch, seq = out["raw"], out["batch"], out["sequential"]
    return [
        Figure("batch.vs_raw_httpx", out["batch_vs_raw"], "x", 0.95, ">=",
               f"c={CONCURRENCY}: batch {batch.tokens_per_s:.0f} tok/s vs raw {raw.tokens_per_s:.0f} tok/s; "
               f"{requests} req x {MAX_TOKENS} tok, best of {rounds}"),
        Figure("batch.vs_concurrency1", out["batch_vs_sequential"], "x", 3.0, ">=",
               f"c={CONCURRENCY} {batch.tokens_per_s:.0f} tok/s vs c=1 {seq.tokens_per_s:.0f} tok/s "
               f"({seq.requests} req)"),
    ]
