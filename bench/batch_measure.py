"""Batch throughput against a running server: qwentui's batch vs a raw asyncio httpx client.

    python bench/batch_measure.py http://127.0.0.1:30000 --requests 64 --concurrency 8

`measure_batch` runs the real `BatchRunner` + `Sender` (output file, fsync groups and
all); `measure_raw` is the baseline: the same request bodies through one
`httpx.AsyncClient` and an `asyncio.Semaphore`, nothing else. Both return a
`Measurement`; the ratios the issue asks for are batch/raw at equal concurrency
(target ≥ 0.95) and batch(concurrency 8)/batch(concurrency 1) (target ≥ 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from qwentui.batch.runner import BatchOptions, BatchRunner, Sender
from qwentui.batch.jsonl import OutputWriter, parse_lines


@dataclass(frozen=True)
class Measurement:
    label: str
    concurrency: int
    requests: int
    ok: int
    completion_tokens: int
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def prompts(n: int, max_tokens: int) -> list[str]:
    return [json.dumps({"id": i, "prompt": f"Benchmark question {i}: explain batching.", "max_tokens": max_tokens})
            for i in range(n)]


async def measure_batch(base_url: str, *, requests: int = 64, concurrency: int = 8, max_tokens: int = 64,
                        thinking: bool = False, api_key: str = "", model: str = "default") -> Measurement:
    items = parse_lines(prompts(requests, max_tokens))
    sender = Sender(base_url, api_key=api_key, model=model)
    with tempfile.TemporaryDirectory() as tmp:
        writer = OutputWriter(Path(tmp) / "out.jsonl")
        runner = BatchRunner(items, writer, sender.send, model=model,
                             options=BatchOptions(concurrency=concurrency, thinking=thinking, max_tokens=max_tokens))
        start = time.perf_counter()
        result = await runner.run()
        wall = time.perf_counter() - start
        writer.close()
    await sender.aclose()
    return Measurement("batch", concurrency, requests, result.ok, result.completion_tokens, wall)


async def measure_raw(base_url: str, *, requests: int = 64, concurrency: int = 8, max_tokens: int = 64,
                      thinking: bool = False, api_key: str = "", model: str = "default") -> Measurement:
    sender = Sender(base_url, model=model)  # only to build identical bodies
    bodies = [sender.body([{"role": "user", "content": json.loads(p)["prompt"]}], thinking=thinking,
                          max_tokens=max_tokens, params={}) for p in prompts(requests, max_tokens)]
    await sender.aclose()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    tokens = ok = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600, limits=limits) as client:
        async def one(body: dict) -> None:
            nonlocal tokens, ok
            async with gate:
                response = await client.post("/v1/chat/completions", json=body)
            if response.status_code == 200:
                ok += 1
                tokens += response.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - start
    return Measurement("raw httpx", concurrency, requests, ok, tokens, wall)


async def compare(base_url: str, *, requests: int, concurrency: int, max_tokens: int, rounds: int = 3) -> dict:
    """Best of `rounds` for each, interleaved so drift hits both alike."""
    best: dict[str, Measurement] = {}
    for _ in range(rounds):
        for key, fn, conc in (("raw", measure_raw, concurrency), ("batch", measure_batch, concurrency),
                              ("sequential", measure_batch, 1)):
            n = requests if conc > 1 else max(4, requests // concurrency)
            m = await fn(base_url, requests=n, concurrency=conc, max_tokens=max_tokens)
            if key not in best or m.tokens_per_s > best[key].tokens_per_s:
                best[key] = m
    return {"raw": best["raw"], "batch": best["batch"], "sequential": best["sequential"],
            "batch_vs_raw": best["batch"].tokens_per_s / best["raw"].tokens_per_s,
            "batch_vs_sequential": best["batch"].tokens_per_s / best["sequential"].tokens_per_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base_url")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    out = asyncio.run(compare(a.base_url, requests=a.requests, concurrency=a.concurrency,
                              max_tokens=a.max_tokens, rounds=a.rounds))
    for key in ("raw", "batch", "sequential"):
        m = out[key]
        print(f"{m.label:>10} c={m.concurrency:<3} {m.ok}/{m.requests} ok  {m.tokens_per_s:8.1f} tok/s  "
              f"{m.requests_per_s:6.1f} req/s  {m.wall_s:.2f}s")
    print(f"batch / raw httpx (same concurrency): {out['batch_vs_raw']:.3f}  (target >= 0.95)")
    print(f"batch c={a.concurrency} / sequential: {out['batch_vs_sequential']:.2f}x  (target >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
