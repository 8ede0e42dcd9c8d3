"""BatchRunner logic with scripted senders (retries, crash, stop, cache) and the Sender's HTTP side."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from qwentui.chat import client as chat
from qwentui.batch.runner import BatchOptions, BatchResult, BatchRunner, Sender, is_transient
from qwentui.batch.jsonl import OutputWriter, parse_lines
from qwentui.cache import SqliteCache

FAST = BatchOptions(concurrency=4, backoff=0.001, backoff_max=0.002)


def items(n: int, extra: str = ""):
    return parse_lines([f'{{"id": "r{i}", "prompt": "question {i}"{extra}}}' for i in range(n)])


def result(text="answer", tokens=10, latency=0.1) -> chat.ChatResult:
    return chat.ChatResult(text, "why", chat.Usage(5, tokens, 2, 5 + tokens), "stop", latency)


def read_out(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Scripted:
    """A send function: answers after `delay`, or raises what `errors` lists for a prompt."""

    def __init__(self, delay: float = 0.0, errors: dict | None = None) -> None:
        self.delay, self.errors = delay, errors or {}
        self.calls: list[dict] = []
        self.active = self.peak = 0

    async def __call__(self, messages, *, thinking, max_tokens, params):
        prompt = messages[-1]["content"]
        self.calls.append({"prompt": prompt, "thinking": thinking, "max_tokens": max_tokens, "params": params})
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            queue = self.errors.get(prompt)
            if queue:
                raise queue.pop(0)
            return result(f"answer to {prompt}")
        finally:
            self.active -= 1


async def run(tmp_path, todo, send, **kw) -> tuple[BatchResult, list[dict]]:
    writer = OutputWriter(tmp_path / "out.jsonl", resume=kw.pop("resume", False), overwrite=True)
    runner = BatchRunner(todo, writer, send, model="m", options=kw.pop("options", FAST), **kw)
    try:
        res = await runner.run()
    finally:
        writer.close()
    return res, read_out(tmp_path / "out.jsonl")


async def test_all_answered_with_bounded_concurrency(tmp_path):
    send = Scripted(delay=0.01)
    res, out = await run(tmp_path, items(20), send)
    assert send.peak == 4
    assert (res.ok, res.failed, res.requests, res.not_done) == (20, 0, 20, 0)
    assert res.completion_tokens == 200 and res.prompt_tokens == 100 and res.reasoning_tokens == 40
    assert sorted(r["id"] for r in out) == sorted(f"r{i}" for i in range(20))
    first = next(r for r in out if r["id"] == "r0")
    assert first == {"id": "r0", "content": "answer to question 0", "reasoning": "why",
                     "usage": {"prompt_tokens": 5, "completion_tokens": 10, "reasoning_tokens": 2,
                               "total_tokens": 15},
                     "latency_ms": 100.0, "finish_reason": "stop", "cached": False}
    assert res.speedup == pytest.approx(20 * 0.1 / res.wall_s)


async def test_per_line_params_override_options(tmp_path):
    send = Scripted()
    todo = parse_lines(['{"prompt": "a", "max_tokens": 7, "thinking": false, "temperature": 0, "seed": 3}',
                        '{"prompt": "b"}'])
    await run(tmp_path, todo, send, options=BatchOptions(thinking=True, max_tokens=99))
    calls = {c["prompt"]: c for c in send.calls}
    assert calls["a"] == {"prompt": "a", "thinking": False, "max_tokens": 7, "params": {"temperature": 0, "seed": 3}}
    assert calls["b"] == {"prompt": "b", "thinking": True, "max_tokens": 99, "params": {}}


async def test_bad_lines_are_written_as_errors_and_others_processed(tmp_path):
    todo = parse_lines(['{"prompt": "a"}', "{broken", '{"id": 9}', '{"prompt": "d"}'])
    res, out = await run(tmp_path, todo, Scripted())
    assert (res.ok, res.failed) == (2, 2)
    errors = {r["id"]: r for r in out if "error" in r}
    assert errors[2]["error"].startswith("line 2: invalid JSON") and errors[2]["retryable"] is False
    assert errors[9]["line"] == 3 and "prompt" in errors[9]["error"]


async def test_transient_errors_are_retried_with_backoff(tmp_path):
    sleeps = []

    async def sleep(s):
        sleeps.append(s)

    errors = {"question 0": [chat.ConnectError("refused"), chat.ServerError(503, "busy")]}
    res, out = await run(tmp_path, items(1), Scripted(errors=errors), sleep=sleep,
                         options=BatchOptions(backoff=0.5, backoff_max=8))
    assert res.ok == 1 and res.retries == 2 and out[0]["content"] == "answer to question 0"
    assert 0.5 <= sleeps[0] <= 0.55 and 1.0 <= sleeps[1] <= 1.1


async def test_permanent_error_is_not_retried(tmp_path):
    errors = {"question 0": [chat.ContextLengthError(400, "too long for the context")]}
    send = Scripted(errors=errors)
    res, out = await run(tmp_path, items(1), send)
    assert res.failed == 1 and res.retries == 0 and len(send.calls) == 1
    assert out[0] == {"id": "r0", "line": 1, "error": "too long for the context", "retryable": False,
                      "attempts": 1}


async def test_exhausted_retries_on_a_dead_server_fail_the_rest_fast(tmp_path):
    class Dead(Scripted):
        async def __call__(self, messages, **kw):
            self.calls.append(messages)
            raise chat.ConnectError("cannot connect to http://127.0.0.1:1: is the engine running?")

    send = Dead()
    res, out = await run(tmp_path, items(30), send, options=BatchOptions(concurrency=1, retries=2,
                                                                         backoff=0.001))
    assert res.failed == 30 and res.ok == 0
    assert len(send.calls) == 3  # one request's attempts, then the circuit is open
    assert "engine unreachable" in res.engine_error
    assert all(r["retryable"] for r in out) and len(out) == 30


async def test_engine_crash_marks_in_flight_and_remaining_failed_then_resume_finishes(tmp_path):
    crashed = {"now": False}

    class Crashing(Scripted):
        async def __call__(self, messages, **kw):
            if messages[-1]["content"] == "question 5":
                crashed["now"] = True
            if crashed["now"]:
                raise chat.StreamError("lost the connection to the engine mid-answer (did it crash?)")
            return await super().__call__(messages, **kw)

    problem = lambda: "engine crashed (exit code -9)" if crashed["now"] else None
    res, out = await run(tmp_path, items(12), Crashing(), engine_problem=problem,
                         options=BatchOptions(concurrency=1))
    assert (res.ok, res.failed) == (5, 7) and res.engine_error == "engine crashed (exit code -9)"
    assert len(out) == 12  # nothing lost: one line per input
    assert all(r["retryable"] for r in out if "error" in r)
    crashed["now"] = False  # engine restarted
    send = Scripted()
    res2, out2 = await run(tmp_path, items(12), send, resume=True)
    assert res2.skipped == 5 and res2.ok == 7 and len(send.calls) == 7
    assert len(out2) == 12 and all("content" in r for r in out2)


async def test_stop_cancels_in_flight_and_leaves_them_for_resume(tmp_path):
    writer = OutputWriter(tmp_path / "out.jsonl")
    send = Scripted(delay=0.05)
    runner = BatchRunner(items(40), writer, send, model="m", options=BatchOptions(concurrency=4))
    task = asyncio.create_task(runner.run())
    while runner.progress().done < 6:
        await asyncio.sleep(0.01)
    runner.stop()
    res = await task
    writer.close()
    assert res.interrupted and res.not_done == 40 - res.requests and res.not_done > 0
    done_ids = {r["id"] for r in read_out(tmp_path / "out.jsonl")}
    assert len(done_ids) == res.ok
    res2, out = await run(tmp_path, items(40), Scripted(), resume=True)
    assert res2.skipped == res.ok and res2.ok == 40 - res.ok
    assert sorted(r["id"] for r in out) == sorted(f"r{i}" for i in range(40))


async def test_outer_cancellation_stops_workers(tmp_path):
    writer = OutputWriter(tmp_path / "out.jsonl")
    runner = BatchRunner(items(10), writer, Scripted(delay=10), model="m")
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(w.done() for w in runner._workers)
    writer.close()


async def test_cache_serves_repeats(tmp_path):
    cache = SqliteCache(tmp_path / "c.db")
    todo = parse_lines(['{"prompt": "same"}', '{"prompt": "other"}'])
    send = Scripted()
    res, _ = await run(tmp_path, todo, send, cache=cache)
    assert res.cached == 0 and len(send.calls) == 2
    todo2 = parse_lines(['{"prompt": "same"}', '{"prompt": "other"}', '{"prompt": "same", "max_tokens": 3}'])
    res2, out = await run(tmp_path, todo2, send, cache=cache)
    assert res2.cached == 2 and len(send.calls) == 3  # different max_tokens is a different key
    assert [r["cached"] for r in out if r["id"] in (1, 2)] == [True, True]
    assert res2.cache.hits == 2 and res2.cache.tokens_saved == 20
    assert res2.completion_tokens == 10  # cache hits are not counted as generated
    await cache.aclose()


@pytest.mark.parametrize("exc,transient", [
    (chat.ConnectError("x"), True), (chat.StreamError("x"), True), (chat.TimeoutError_("x"), True),
    (chat.ServerError(503, "x"), True), (chat.ServerError(500, "x"), True), (chat.ServerError(429, "x"), True),
    (chat.ServerError(400, "x"), False), (chat.ServerError(401, "x"), False),
    (chat.ContextLengthError(400, "x"), False),
])
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


# ---------------------------------------------------------------- Sender (HTTP)


def sender_with(handler) -> Sender:
    return Sender("http://127.0.0.1:9", api_key="k", model="qwen", transport=httpx.MockTransport(handler))


async def test_sender_body_and_result():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(200, json={"choices": [{"message": {"content": "\n\nHello", "reasoning_content": "hm"},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                                                   "reasoning_tokens": 1}})

    s = sender_with(handler)
    r = await s.send([{"role": "user", "content": "hi"}], thinking=False, max_tokens=8, params={"seed": 1})
    await s.aclose()
    assert seen["auth"] == "Bearer k"
    assert seen["body"] == {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "stream": False,
                            "temperature": 0.7, "top_p": 0.8, "top_k": 20, "seed": 1, "max_tokens": 8,
                            "chat_template_kwargs": {"enable_thinking": False}}
    assert (r.content, r.reasoning, r.finish_reason, r.usage.completion_tokens) == ("\n\nHello", "hm", "stop", 4)


async def test_sender_splits_think_tags_without_reasoning_parser():
    def handler(request):
        return httpx.Response(200, json={"choices": [{"message": {"content": "<think>\nhm\n</think>\n\nHi"},
                                                      "finish_reason": "stop"}]})

    s = sender_with(handler)
    r = await s.send([{"role": "user", "content": "hi"}], thinking=True, max_tokens=None, params={})
    await s.aclose()
    assert r.reasoning == "\nhm\n" and r.content == "\n\nHi" and r.usage is None


@pytest.mark.parametrize("status,body,cls", [
    (503, {"object": "error", "message": "Request waiting timeout reached.", "type": "x", "code": 503},
     chat.ServerError),
    (400, {"object": "error", "message": "Requested token count exceeds the model's maximum context length",
           "type": "BadRequestError", "code": 400}, chat.ContextLengthError),
])
async def test_sender_maps_http_errors(status, body, cls):
    s = sender_with(lambda request: httpx.Response(status, json=body))
    with pytest.raises(cls) as info:
        await s.send([{"role": "user", "content": "hi"}], thinking=True, max_tokens=None, params={})
    await s.aclose()
    assert info.value.status == status


async def test_sender_maps_connection_errors():
    def handler(request):
        raise httpx.ConnectError("refused")

    s = sender_with(handler)
    with pytest.raises(chat.ConnectError, match="is the engine running"):
        await s.send([{"role": "user", "content": "hi"}], thinking=True, max_tokens=None, params={})
    await s.aclose()


async def test_sender_rejects_garbage():
    s = sender_with(lambda request: httpx.Response(200, text="not json"))
    with pytest.raises(chat.StreamError, match="unexpected answer"):
        await s.send([{"role": "user", "content": "hi"}], thinking=True, max_tokens=None, params={})
    await s.aclose()


# ------------------------------------------------------------------ one way to talk to the engine


async def test_sender_and_chat_client_build_one_body():
    from qwentui.chat.client import ChatClient

    client = ChatClient("http://127.0.0.1:9", model="qwen")
    params = {"temperature": 0.1, "seed": 7, "stop": ["x"]}
    messages = [{"role": "user", "content": "hi"}]
    ours = sender_with(lambda r: httpx.Response(500)).body(messages, thinking=False, max_tokens=9, params=params)
    assert ours == client.request_body(messages, thinking=False, max_tokens=9, stream=False, **params)
    await client.aclose()


@pytest.mark.parametrize("message, want", [
    ({"content": "<think>hm</think>\n\nhi"}, ("\n\nhi", "hm")),  # server without --reasoning-parser
    ({"content": "  <think>a</think>b"}, ("b", "a")),
    ({"content": "say <think> later"}, ("say <think> later", "")),
    ({"content": "<think>cut short"}, ("", "cut short")),
    ({"content": "x", "reasoning_content": "r"}, ("x", "r")),
    ({"content": None, "reasoning_content": None}, ("", "")),
])
async def test_sender_reads_an_answer_like_the_stream(message, want):
    from qwentui.chat.client import parse_sse_bytes

    body = {"choices": [{"message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}
    s = sender_with(lambda r: httpx.Response(200, json=body))
    result = await s.send([{"role": "user", "content": "q"}], thinking=True, max_tokens=None, params={})
    await s.aclose()
    assert (result.content, result.reasoning, result.finish_reason) == (*want, "stop")
    assert result.usage.to_dict() == {"prompt_tokens": 2, "completion_tokens": 3, "reasoning_tokens": 0,
                                      "total_tokens": 5}
    chunk = {"choices": [{"delta": message, "finish_reason": "stop"}]}
    streamed = parse_sse_bytes([f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()])
    assert "".join(e.text for e in streamed if isinstance(e, chat.ContentDelta)) == want[0]


async def test_sender_maps_errors_like_the_chat_client():
    from qwentui.chat.client import ChatClient

    def refuse(request):
        raise httpx.ConnectError("refused")

    client = ChatClient("http://127.0.0.1:9", model="qwen", transport=httpx.MockTransport(refuse))
    with pytest.raises(chat.ConnectError) as streamed:
        await client.chat([{"role": "user", "content": "hi"}])
    s = sender_with(refuse)
    with pytest.raises(chat.ConnectError) as batched:
        await s.send([{"role": "user", "content": "hi"}], thinking=True, max_tokens=None, params={})
    await s.aclose()
    await client.aclose()
    assert batched.value.message == streamed.value.message


def test_usage_dict_round_trips_and_none_is_zeros():
    usage = chat.Usage(prompt_tokens=4, completion_tokens=6, reasoning_tokens=2, total_tokens=10)
    assert chat.Usage.from_json(usage.to_dict()) == usage
    assert chat.Usage().to_dict() == {"prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0,
                                      "total_tokens": 0}


def test_collector_gathers_text_usage_finish_and_a_cache_hit():
    ticks = iter(range(10))
    collector = chat.Collector(lambda: float(next(ticks)))
    for event in (chat.CacheHit(3), chat.ReasoningDelta("a"), chat.ReasoningDelta("b"), chat.ContentDelta("c"),
                  chat.Usage(completion_tokens=3), chat.Finished("stop")):
        collector.add(event)
    result = collector.result()
    assert (result.content, result.reasoning, result.finish_reason, result.cached) == ("c", "ab", "stop", True)
    assert result.usage.completion_tokens == 3 and result.ttft_s == 1.0 and result.latency_s == 2.0
