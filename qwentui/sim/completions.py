"""`/v1/completions` (OpenAI text completions) and the native `/generate` used by warm-up."""

from __future__ import annotations

import json
import time
import uuid
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from qwentui.sim import protocol, textgen
from qwentui.sim.chat import abort_body, json_response, respond, sse
from qwentui.sim.engine import Aborted, Job
from qwentui.sim.protocol import ApiError, ChatParams
from qwentui.sim.state import SimState


class CompletionRun:
    def __init__(self, state: SimState, p: ChatParams) -> None:
        self.state, self.p = state, p
        self.prompt_tokens = max(textgen.count_text_tokens(p.prompt or ""), 1)
        max_new = state.fit_context(self.prompt_tokens, p.max_tokens)
        plan = textgen.plan_for_prompt(state.args.sim_seed, p.prompt or "")
        self.job = Job(tokens=plan.tokens(p.min_tokens, p.ignore_eos), prompt_tokens=self.prompt_tokens,
                       max_new_tokens=max_new, streaming=p.stream, stop=p.stop)
        self.rid = self.job.rid = p.rid or uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self, exclude_none: bool) -> dict:
        j = self.job
        usage = {"prompt_tokens": j.prompt_tokens, "total_tokens": j.prompt_tokens + j.completion_tokens,
                 "completion_tokens": j.completion_tokens, "prompt_tokens_details": None,
                 "reasoning_tokens": 0}
        return {k: v for k, v in usage.items() if v is not None} if exclude_none else usage

    def _chunk(self, text: str, finish: str | None = None, matched=None) -> dict:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "matched_stop": matched}
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.p.model,
                "choices": [choice]}

    async def events(self) -> AsyncIterator[str]:
        try:
            async for piece in self.state.engine.run(self.job):
                yield sse(self._chunk(piece))
        except Aborted as exc:
            yield f"data: {json.dumps({'error': abort_body(exc, streaming=True)})}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield sse(self._chunk("", self.job.finish_reason, self.job.matched_stop))
        if self.p.include_usage or self.state.args.stream_response_default_include_usage:
            yield sse({"id": self.rid, "object": "text_completion", "created": self.created,
                       "model": self.p.model, "choices": [], "usage": self.usage(exclude_none=True)})
        yield "data: [DONE]\n\n"

    async def complete(self) -> dict:
        text = "".join([piece async for piece in self.state.engine.run(self.job)])
        out = self._chunk(text, self.job.finish_reason, self.job.matched_stop)
        out.update(usage=self.usage(exclude_none=False), metadata={"weight_version": "default"})
        return out


async def completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    try:
        body = protocol.parse_json_body(await request.body(), request.headers.get("content-type", ""))
        p = protocol.parse_completion(body)
        protocol.check_sampling(p)
        run = CompletionRun(state, p)
    except ApiError as exc:
        return json_response(exc.body, exc.status)
    return await respond(request, run)


async def generate(request: Request) -> Response:
    """Native API, non-streaming only: {"text", "sampling_params"} → {"text", "meta_info"}."""
    state: SimState = request.app.state.sim
    try:
        body = protocol.parse_json_body(await request.body(), request.headers.get("content-type", ""))
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise protocol.bad_request("Either text, input_ids or input_embeds should be provided.")
        params = body.get("sampling_params") or {}
        p = ChatParams(messages=[], prompt=body["text"], max_tokens=params.get("max_new_tokens", 128))
        run = CompletionRun(state, p)
    except ApiError as exc:
        return json_response(exc.body, exc.status)
    text = "".join([piece async for piece in state.engine.run(run.job)])
    return json_response(generate_result(run, text))


def generate_result(run: CompletionRun, text: str) -> dict:
    j = run.job
    finish = {"type": j.finish_reason, "matched": j.matched_stop} if j.finish_reason == "stop" else \
        {"type": j.finish_reason, "length": j.completion_tokens}
    return {"text": text, "meta_info": {"id": run.rid, "finish_reason": finish, "prompt_tokens": j.prompt_tokens,
                                        "weight_version": "default", "completion_tokens": j.completion_tokens,
                                        "cached_tokens": 0, "e2e_latency": round(time.time() - run.created, 4)}}
