"""Chat streaming: the console rendering a long answer vs a raw httpx SSE reader.

Both read the same simulator stream (same prompt, `ignore_eos`, fixed `max_tokens`),
interleaved, best of `rounds`. The app runs headless (`run_test`) through its own
streaming path: `make_app(client=...)` → ChatPane.send → ChatClient.stream_chat →
AssistantMessage. While the app streams, a key press is posted every PROBE_S and
the time until the prompt shows it is the input latency; the bench's own 10 ms sleeps
waking up late measure every event-loop block (the worst wait any key could see).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import httpx

from common import Ctx, Figure, running_sim

PROMPT = "Write a very long essay about batching on GPUs."
PROBE_S = 0.1
RATE = 4000  # tok/s: the simulator then sends ~230 SSE chunks/s, like SGLang's one chunk per token
TOKENS = 20000


def run(ctx: Ctx) -> list[Figure]:
    rounds = ctx.pick(1, 3)
    with running_sim(tokens_per_s=RATE) as sim:
        raws, apps = [], []
        for _ in range(rounds):  # interleaved; best time of each, but every latency probe counts
            raws.append(asyncio.run(raw_stream(sim.base_url, TOKENS)))
            apps.append(asyncio.run(app_stream(sim.base_url, TOKENS)))
    raw_s, chunks = min(raws)
    return figures(raw_s, chunks, min(apps, key=lambda a: a.seconds), apps)


def figures(raw_s: float, chunks: int, app: "AppRun", runs: list["AppRun"]) -> list[Figure]:
    lat = sorted(x for run in runs for x in run.latencies) or [float("nan")]
    stalls = sorted(x for run in runs for x in run.stalls) or [float("nan")]
    refreshes = app.messages["Update"] + app.messages["Layout"]
    return [
        Figure("chat.stream_ratio", app.seconds / raw_s, "x", 1.10, "<=",
               f"app {app.seconds:.2f}s vs raw httpx {raw_s:.2f}s; {TOKENS} tok at {RATE} tok/s, "
               f"{chunks} SSE chunks"),
        Figure("chat.layout_frames_per_s", app.layouts / app.seconds, "1/s", note=(
            f"{app.layouts} layout refreshes, {TOKENS / max(app.layouts, 1):.0f} tok merged per frame; "
            f"{refreshes} refresh requests coalesced")),
        Figure("chat.input_latency_max", lat[-1], "s", 0.1, "<=",
               f"key press → prompt shows it; {len(lat)} probes in {len(runs)} streams, "
               f"median {lat[len(lat) // 2] * 1000:.1f} ms"),
        Figure("chat.loop_stall_max", stalls[-1], "s", 0.1, "<=", note=(
            f"longest event-loop block while streaming (worst wait for a key); "
            f"{sum(x > 0.05 for x in stalls)} over 50 ms, {sum(x > 0.1 for x in stalls)} over 100 ms")),
    ]


def _client_class():
    from qwentui.chat.client import ChatClient

    class FixedLengthClient(ChatClient):
        """Asks the engine to ignore EOS so every reply is exactly max_tokens long."""

        async def stream_chat(self, messages, *, thinking=True, max_tokens=None, **params):
            async for event in super().stream_chat(messages, thinking=thinking, max_tokens=max_tokens,
                                                   ignore_eos=True, **params):
                yield event

    return FixedLengthClient


async def raw_stream(base_url: str, tokens: int) -> tuple[float, int]:
    """Minimal consumer: POST, read SSE lines until [DONE]. Returns (seconds, data lines)."""
    from qwentui.chat.client import ChatClient

    builder = ChatClient(base_url)  # only for the identical request body
    body = builder.request_body([{"role": "user", "content": PROMPT}], thinking=True, max_tokens=tokens,
                                ignore_eos=True)
    await builder.aclose()
    lines = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        t0 = time.perf_counter()
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    lines += 1
                    if line == "data: [DONE]":
                        break
        return time.perf_counter() - t0, lines


@dataclasses.dataclass
class AppRun:
    seconds: float
    latencies: list[float]
    messages: Counter
    layouts: int
    stalls: list[float]


async def app_stream(base_url: str, tokens: int) -> AppRun:
    from textual import events

    from qwentui.config import Config
    from qwentui.ui.app import make_app

    cfg = Config()
    cfg = dataclasses.replace(cfg, chat=dataclasses.replace(cfg.chat, max_tokens=tokens, thinking=True))
    client = _client_class()(base_url)
    counts: Counter = Counter()
    app = make_app(cfg, client=client)
    async with app.run_test(size=(80, 24), message_hook=lambda m: counts.update([type(m).__name__])) as pilot:
        await pilot.pause()
        chat = app.chat
        layouts = [0]
        app.screen.screen_layout_refresh_signal.subscribe(
            app, lambda _screen: layouts.__setitem__(0, layouts[0] + 1), immediate=True)
        counts.clear()
        t0 = time.perf_counter()
        if not chat.send(PROMPT):
            raise RuntimeError(f"the chat pane refused to send (blocked: {chat.blocked!r})")
        latencies: list[float] = []
        stalls: list[float] = []  # how late a 10 ms sleep woke up: the event loop was busy
        next_probe = t0 + PROBE_S
        while chat.streaming:
            if time.perf_counter() >= next_probe:
                latencies.append(await _key_latency(app, events))
                next_probe = time.perf_counter() + PROBE_S
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - before - 0.01)
        seconds = time.perf_counter() - t0
        turn = chat.conversation.turns[-1]
        usage = turn.usage.completion_tokens if turn.usage else 0
        if turn.status != "done" or usage != tokens:
            raise RuntimeError(f"the app's answer ended {turn.status!r} after {usage} tokens: {turn.error}")
    await client.aclose()  # passed in, so the app leaves it open
    return AppRun(seconds, latencies, counts, layouts[0], stalls)


async def _key_latency(app, events) -> float:
    prompt = app.chat.prompt
    before = prompt.text
    t0 = time.perf_counter()
    app.post_message(events.Key("x", "x"))
    while prompt.text == before:
        await asyncio.sleep(0.001)
        if time.perf_counter() - t0 > 10:
            break
    return time.perf_counter() - t0
