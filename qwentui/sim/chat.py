"""`/v1/chat/completions`: Qwen3 thinking, the qwen3 reasoning split, SSE framing (§3, §4, §6)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import AsyncIterator, Callable

from starlette.requests import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from qwentui.sim import protocol, textgen
from qwentui.sim.engine import Aborted, Job
from qwentui.sim.protocol import ApiError, ChatParams, dumps
from qwentui.sim.reasoning import Qwen3Detector
from qwentui.sim.state import SimState

def json_response(obj, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def sse(obj) -> str:
    return f"data: {dumps(obj)}\n\n"


def abort_body(exc: Aborted, streaming: bool) -> dict:
    """Scheduler abort with a status: type is the status name in streams, the code otherwise."""
    from http import HTTPStatus

    err_type = HTTPStatus(exc.status).name if streaming else str(exc.status)
    return protocol.error_body(exc.message, err_type, exc.status)


async def merged(engine, jobs: list[Job]) -> AsyncIterator[tuple[int, str | None]]:
    """(choice index, text) from all jobs as they come; (index, None) when one finishes."""
    if len(jobs) == 1:
        async for piece in engine.run(jobs[0]):
            yield 0, piece
        yield 0, None
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, job: Job) -> None:
        try:
            async for piece in engine.run(job):
                await queue.put((i, piece))
            await queue.put((i, None))
        except Aborted as exc:
            await queue.put((i, exc))

    tasks = [asyncio.ensure_future(pump(i, job)) for i, job in enumerate(jobs)]
    try:
        for _ in range(len(jobs)):
            while True:
                i, item = await queue.get()
                if isinstance(item, Aborted):
                    raise item
                yield i, item
                if item is None:
                    break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ChatRun:
    """One chat request after validation: its jobs (one per choice), reasoning split, framing."""

    def __init__(self, state: SimState, p: ChatParams) -> None:
        self.state, self.p = state, p
        args = state.args
        self.thinking = p.template_kwargs.get("enable_thinking") is not False
        parser = args.reasoning_parser
        self.separate = bool(parser) and p.separate_reasoning
        self.force = self.thinking or parser == "qwen3-thinking"
        self.count_reasoning = bool(parser) and self.force
        self.prompt_tokens = textgen.prompt_tokens(p.messages, self.thinking)
        max_new = state.fit_context(self.prompt_tokens, p.max_tokens)
        self.rid = p.rid or uuid.uuid4().hex
        self.jobs = []
        for i in range(p.n):
            plan = textgen.plan_for(args.sim_seed, p.messages, self.thinking, index=i)
            self.jobs.append(Job(tokens=plan.tokens(p.min_tokens, p.ignore_eos), prompt_tokens=self.prompt_tokens,
                                 max_new_tokens=max_new, streaming=p.stream, stop=p.stop, rid=self.rid))
        self.created = int(time.time())

    def _reasoning_tokens(self, job: Job) -> int:
        if not self.count_reasoning:
            return 0
        return job.think_end_at if job.think_end_at is not None else job.completion_tokens

    def usage(self) -> dict:
        completion = sum(j.completion_tokens for j in self.jobs)
        r = sum(self._reasoning_tokens(j) for j in self.jobs)
        return {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens + completion,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": 0} if self.state.args.enable_cache_report else None,
                "reasoning_tokens": r, "completion_tokens_details": {"reasoning_tokens": r} if r else None}

    def _chunk(self, index: int, delta: dict, finish: str | None = None, matched=None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish,
                  "matched_stop": matched}
        out = {"id": self.rid, "object": "chat.completion.chunk", "created": self.created,
               "model": self.p.model, "choices": [choice]}
        if self.p.continuous_usage and finish is None and "role" not in delta:  # none on the role chunk
            out["usage"] = self.usage()
        return sse(out)

    @staticmethod
    def _deltas(det: Qwen3Detector | None, text: str, final: bool = False) -> list[dict]:
        if det is None:
            return [{"reasoning_content": None, "content": text}] if text else []
        reasoning, content = det.finish() if final else det.feed(text)
        out = []
        if reasoning:
            out.append({"reasoning_content": reasoning})
        if content:
            out.append({"reasoning_content": None, "content": content})
        return out

    def _closing(self, i: int, det: Qwen3Detector | None, started: bool) -> list[str]:
        """Role chunk if nothing was produced, flushed parser text, then the finish chunk."""
        job = self.jobs[i]
        out = [] if started else [self._chunk(i, {"reasoning_content": None, "role": "assistant", "content": ""})]
        if job.finish_reason != "abort":
            out += [self._chunk(i, d) for d in self._deltas(det, "", final=True)]
        return out + [self._chunk(i, {"reasoning_content": None}, job.finish_reason, job.matched_stop)]

    async def events(self) -> AsyncIterator[str]:
        """SSE events: role chunk with the first output, deltas, finish per choice, usage, [DONE]."""
        dets = [Qwen3Detector(self.force, self.p.stream_reasoning) if self.separate else None for _ in self.jobs]
        started = [False] * len(self.jobs)
        try:
            async for i, piece in merged(self.state.engine, self.jobs):
                if piece is None:
                    for event in self._closing(i, dets[i], started[i]):
                        yield event
                    continue
                if not started[i]:
                    started[i] = True
                    yield self._chunk(i, {"reasoning_content": None, "role": "assistant", "content": ""})
                for delta in self._deltas(dets[i], piece):
                    yield self._chunk(i, delta)
        except Aborted as exc:  # an abort with an HTTP status: error event, usage (if asked), [DONE]
            yield f"data: {json.dumps({'error': abort_body(exc, streaming=True)})}\n\n"
        if self.p.include_usage or self.state.args.stream_response_default_include_usage:
            yield sse({"id": self.rid, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.p.model, "choices": [], "usage": self.usage()})
        yield "data: [DONE]\n\n"

    async def complete(self) -> dict:
        texts = [""] * len(self.jobs)
        async for i, piece in merged(self.state.engine, self.jobs):
            texts[i] += piece or ""
        choices = [self._message_choice(i, text) for i, text in enumerate(texts)]
        return {"id": self.rid, "object": "chat.completion", "created": self.created, "model": self.p.model,
                "choices": choices, "usage": self.usage(), "metadata": {"weight_version": "default"}}

    def _message_choice(self, i: int, text: str) -> dict:
        reasoning, content = None, text
        if self.separate:
            det = Qwen3Detector(self.force)
            r1, c1 = det.feed(text)
            r2, c2 = det.finish()
            reasoning, content = (r1 + r2) or None, c1 + c2
        job = self.jobs[i]
        return {"index": i, "message": {"role": "assistant", "content": content, "reasoning_content": reasoning},
                "logprobs": None, "finish_reason": job.finish_reason, "matched_stop": job.matched_stop}


class ClientGone(Exception):
    """The client disconnected before its response started; nobody reads what we answer."""


async def _watch_disconnect(request: Request, task: asyncio.Future) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


async def until_done_or_disconnect(request: Request, awaitable):
    """Await `awaitable`, aborting it if the client goes away (SGLang aborts such requests)."""
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_watch_disconnect(request, task))
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()


ABORT_AFTER_DISCONNECT_S = 2.0  # SGLang's create_abort_task: asyncio.sleep(2), then abort_request(rid)
_END = object()


async def stream_response(request: Request, events: AsyncIterator[str],
                          abort: Callable[[], object] | None = None) -> Response:
    """Headers go out only with the first event, so early errors stay plain JSON (§4).

    The events are produced by their own task, as SGLang's scheduler keeps generating for
    a client that went away: only the response's background task, 2 s later, aborts the
    request (srt/managers/tokenizer_manager.py: create_abort_task). A client gone before
    the first event is aborted at once (the validation-phase path)."""
    try:
        first = await until_done_or_disconnect(request, events.__anext__())
    except ClientGone:
        await events.aclose()
        return Response(status_code=499)
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_END)

    producer = asyncio.ensure_future(pump())

    async def body() -> AsyncIterator[str]:
        yield first
        while (event := await queue.get()) is not _END:
            yield event

    async def abort_later() -> None:
        if producer.done():  # finished normally: SGLang's abort would find nothing to abort
            return
        await asyncio.sleep(ABORT_AFTER_DISCONNECT_S)
        if not producer.done() and abort is not None:
            abort()
        await asyncio.gather(producer, return_exceptions=True)

    return StreamingResponse(body(), media_type="text/event-stream", background=BackgroundTask(abort_later))


def _jobs(run) -> list[Job]:
    return list(getattr(run, "jobs", None) or [run.job])  # chat: one per choice; completions: one


async def respond(request: Request, run) -> Response:
    """Streaming or not, with client-disconnect aborts."""
    if run.p.stream:
        return await stream_response(request, run.events(),
                                     abort=lambda: [run.state.engine.abort(job.rid) for job in _jobs(run)])
    try:
        return json_response(await until_done_or_disconnect(request, run.complete()))
    except ClientGone:
        return Response(status_code=499)
    except Aborted as exc:
        return json_response(abort_body(exc, streaming=False), exc.status)


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    try:
        body = protocol.parse_json_body(await request.body(), request.headers.get("content-type", ""))
        p = protocol.parse_chat(body, state.args.default_chat_template_kwargs)
        protocol.check_sampling(p)
        run = ChatRun(state, p)
    except ApiError as exc:
        return json_response(exc.body, exc.status)
    state.log_request("chat", run.rid, p)
    return await respond(request, run)
