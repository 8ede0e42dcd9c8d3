"""Scripted OpenAI-compatible server for chat tests: an httpx MockTransport that
records each request body and streams SGLang-shaped SSE chunks (contract §4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from qwentui.chat.client import ChatClient


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    if usage is not None:
        body = {"id": "0" * 32, "object": "chat.completion.chunk", "created": 1, "model": "default",
                "choices": [], "usage": usage}
    else:
        body = {"id": "0" * 32, "object": "chat.completion.chunk", "created": 1, "model": "default",
                "choices": [{"index": 0, "delta": delta or {"reasoning_content": None}, "logprobs": None,
                             "finish_reason": finish, "matched_stop": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def answer_chunks(reasoning: list[str], content: list[str], *, finish: str = "stop",
                  prompt_tokens: int = 12) -> list[bytes]:
    out = [chunk({"reasoning_content": None, "role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": r}) for r in reasoning]
    out += [chunk({"reasoning_content": None, "content": c}) for c in content]
    out.append(chunk(finish=finish))
    completion = len(reasoning) + len(content)
    out.append(chunk(usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                            "total_tokens": prompt_tokens + completion, "prompt_tokens_details": None,
                            "reasoning_tokens": len(reasoning),
                            "completion_tokens_details": {"reasoning_tokens": len(reasoning)} if reasoning else None}))
    out.append(b"data: [DONE]\n\n")
    return out


REASONING = ["The user", " greets me", ". I should", " answer kindly", "."]
CONTENT = ["\n\n**Hello!**", " How can", " I help", " you today?"]


class _Stream(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], delay: float, gate: asyncio.Event | None, closed: list,
                 gate_at: int = 2) -> None:
        self.parts, self.delay, self.gate, self.closed = parts, delay, gate, closed
        self.gate_at = gate_at if gate_at >= 0 else len(parts) + gate_at

    async def __aiter__(self):
        for i, part in enumerate(self.parts):
            if self.gate is not None and i == self.gate_at:
                await self.gate.wait()  # hold the stream mid-answer until the test opens it
            if self.delay:
                await asyncio.sleep(self.delay)
            elif i % 64 == 0:
                await asyncio.sleep(0)
            yield part

    async def aclose(self):
        self.closed.append(True)


@dataclass
class ScriptedServer:
    """`reply(body) -> list[bytes] | httpx.Response`; default: a short thinking answer."""

    reply: Callable[[dict], list[bytes] | httpx.Response] | None = None
    delay: float = 0.0
    gate: asyncio.Event | None = None
    gate_at: int = 2  # the part the gate holds back; negative counts from the end
    bodies: list[dict] = field(default_factory=list)
    closed: list = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        result = self.reply(body) if self.reply else self.default(body)
        if isinstance(result, httpx.Response):
            return result
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Stream(result, self.delay, self.gate, self.closed, self.gate_at))

    @staticmethod
    def default(body: dict) -> list[bytes]:
        thinking = body.get("chat_template_kwargs", {}).get("enable_thinking", True)
        return answer_chunks(REASONING if thinking else [], CONTENT)

    def client(self) -> ChatClient:
        return ChatClient("http://127.0.0.1:9", transport=httpx.MockTransport(self.handler))


class StepClock:
    """Deterministic clock: advances `step` seconds per call."""

    def __init__(self, step: float = 0.01) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
