"""Real clients against the simulator: openai SDK, LangChain ChatOpenAI (the seed's exact args),
50 concurrent streams, queueing, disconnects and aborts."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import pytest

from tests.simproc import running_sim
from tests.waits import poll_until

PROMPT = [{"role": "user", "content": "Explain KV cache in one line"}]


def metric(text: str, name: str, **labels) -> float:
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total or 0.0


@pytest.fixture(scope="module")
def busy_sim():
    with running_sim("--max-running-requests", "16", tokens_per_s=500) as sim:
        yield sim


# -- openai SDK ----------------------------------------------------------------------------------


def test_openai_sdk_non_stream_stream_and_errors(busy_sim):
    import openai

    client = openai.OpenAI(base_url=busy_sim.base_url + "/v1", api_key="EMPTY")
    assert [m.id for m in client.models.list().data] == ["Qwen/Qwen3-1.7B"]
    r = client.chat.completions.create(model="Qwen3-1.7B", messages=PROMPT, temperature=0.5)
    msg = r.choices[0].message
    assert msg.content.startswith("\n\n(simulated)") and msg.reasoning_content
    assert r.usage.completion_tokens > 0 and r.model == "Qwen3-1.7B" and r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="Qwen3-1.7B", messages=PROMPT, stream=True,
                                                 stream_options={"include_usage": True}))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert (content, reasoning) == (msg.content, msg.reasoning_content)
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="x", messages=[])
    assert exc.value.status_code == 400 and "Messages cannot be empty." in str(exc.value)


def test_openai_sdk_wrong_key_is_authentication_error():
    import openai

    with running_sim(api_key="right", metrics=False) as sim:
        bad = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="right")
        assert good.chat.completions.create(model="m", messages=PROMPT, max_tokens=3).usage.completion_tokens == 3


# -- LangChain (the seed's arguments) -------------------------------------------------------------


def seed_llm(base_url: str):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="Qwen3-1.7B", temperature=0.5, api_key="EMPTY", base_url=base_url + "/v1",
                      extra_body={"enable_thinking": True, "return_reasoning": True}, streaming=True)


def test_langchain_invoke_stream_batch(busy_sim):
    llm = seed_llm(busy_sim.base_url)
    answer = llm.invoke("Explain KV cache in one line")
    assert "(simulated) You asked about “Explain KV cache in one line”" in answer.content
    streamed = "".join(chunk.content for chunk in llm.stream("Explain KV cache in one line"))
    assert streamed == answer.content
    results = llm.batch(["first question", "second question", "third question"])
    assert [("“" + q + "”") in r.content for q, r in zip(["first question", "second question", "third question"],
                                                          results)] == [True, True, True]


# -- 50 concurrent streaming clients ---------------------------------------------------------------


async def _stream_one(client: httpx.AsyncClient, i: int) -> dict:
    body = {"model": "Qwen3-1.7B", "messages": [{"role": "user", "content": f"question {i % 5}"}],
            "stream": True, "stream_options": {"include_usage": True}}
    text, usage = "", None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"]:
                delta = chunk["choices"][0]["delta"]
                text += (delta.get("reasoning_content") or "") + (delta.get("content") or "")
            else:
                usage = chunk["usage"]
    return {"i": i, "text": text, "usage": usage}


async def _poll_metrics(client: httpx.AsyncClient, seen: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        seen.append((await client.get("/metrics")).text)
        await asyncio.sleep(0.05)


def test_fifty_concurrent_streams_usage_and_metrics(busy_sim):
    async def main():
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=busy_sim.base_url, timeout=60, limits=limits) as client:
            before = (await client.get("/metrics")).text
            seen, stop = [], asyncio.Event()
            poller = asyncio.ensure_future(_poll_metrics(client, seen, stop))
            results = await asyncio.gather(*(_stream_one(client, i) for i in range(50)))
            stop.set()
            await poller
            refs = {}
            for k in range(5):
                r = await client.post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": f"question {k}"}]})
                refs[k] = r.json()
            return before, seen, results, refs, (await client.get("/metrics")).text

    before, seen, results, refs, after = asyncio.run(main())
    for res in results:
        ref = refs[res["i"] % 5]
        msg = ref["choices"][0]["message"]
        assert res["text"] == msg["reasoning_content"] + msg["content"]
        assert res["usage"] == ref["usage"]
    assert max(metric(t, "sglang:num_running_reqs") for t in seen) == 16
    assert max(metric(t, "sglang:num_queue_reqs") for t in seen) > 0
    assert metric(after, "sglang:num_running_reqs") == 0 and metric(after, "sglang:num_queue_reqs") == 0
    streaming = dict(is_streaming="true")
    assert metric(after, "sglang:num_requests_total", **streaming) - metric(
        before, "sglang:num_requests_total", **streaming) == 50
    generated = sum(r["usage"]["completion_tokens"] for r in results)
    assert metric(after, "sglang:generation_tokens_total", **streaming) - metric(
        before, "sglang:generation_tokens_total", **streaming) == generated


# -- disconnects and aborts -------------------------------------------------------------------


def test_client_disconnect_mid_stream_frees_the_slot(busy_sim):
    url = busy_sim.base_url
    before = httpx.get(url + "/metrics").text
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=30, json={
            "messages": PROMPT, "stream": True, "ignore_eos": True, "max_tokens": 5000}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        # gauges are published lazily (prefill report: the batch before it; then every 40 steps)
        assert poll_until(lambda: metric(httpx.get(url + "/metrics").text, "sglang:num_running_reqs"), 3)
    gone_at = time.monotonic()
    poll_until(lambda: not metric(httpx.get(url + "/metrics").text, "sglang:num_running_reqs"), 5)
    # SGLang aborts a disconnected stream from the response's background task, 2 s later
    assert time.monotonic() - gone_at >= 1.8
    after = httpx.get(url + "/metrics").text
    assert metric(after, "sglang:num_running_reqs") == 0
    assert metric(after, "sglang:num_aborted_requests_total") == metric(before, "sglang:num_aborted_requests_total") + 1


def test_abort_request_by_rid_finishes_with_abort(busy_sim):
    url = busy_sim.base_url
    out = {}

    def consume():
        r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "messages": PROMPT, "stream": True, "ignore_eos": True, "max_tokens": 5000, "rid": "a" * 32})
        out["events"] = [line for line in r.text.split("\n\n") if line]

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.4)
    assert httpx.post(url + "/abort_request", json={"rid": "a" * 32}).status_code == 200
    t.join(10)
    finish = json.loads(out["events"][-2][6:])
    assert finish["choices"][0]["finish_reason"] == "abort" and out["events"][-1] == "data: [DONE]"


def test_queued_request_headers_wait_and_queued_disconnect_is_dropped():
    with running_sim("--max-running-requests", "1", tokens_per_s=1000) as sim:
        url = sim.base_url
        long = {"messages": PROMPT, "stream": True, "ignore_eos": True, "max_tokens": 1000}
        holder = threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions", json=long, timeout=30))
        holder.start()
        time.sleep(0.3)
        with pytest.raises(httpx.ReadTimeout):  # queued: no headers before its first token
            httpx.post(url + "/v1/chat/completions", timeout=httpx.Timeout(30, read=0.3),
                       json={"messages": PROMPT, "stream": True})
        poll_until(lambda: not metric(httpx.get(url + "/metrics").text, "sglang:num_queue_reqs"), 5)
        assert metric(httpx.get(url + "/metrics").text, "sglang:num_queue_reqs") == 0
        t = time.monotonic()
        r = httpx.post(url + "/v1/chat/completions", json={"messages": PROMPT, "stream": True}, timeout=30)
        assert r.status_code == 200 and time.monotonic() - t > 0.1  # waited for the running slot
        holder.join(10)


def test_running_timeout_env_aborts_with_error_event_and_503():
    env = {"SGLANG_REQ_RUNNING_TIMEOUT": "0.3"}
    with running_sim(env=env, tokens_per_s=500) as sim:
        body = {"messages": PROMPT, "ignore_eos": True, "max_tokens": 5000}
        r = httpx.post(sim.base_url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30)
        blocks = [b for b in r.text.split("\n\n") if b]
        assert blocks[-1] == "data: [DONE]"
        assert blocks[-2] == ('data: {"error": {"object": "error", "message": "Request running timeout reached.", '
                              '"type": "SERVICE_UNAVAILABLE", "param": null, "code": 503}}')
        r = httpx.post(sim.base_url + "/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 503 and r.json()["message"] == "Request running timeout reached."
        assert re.fullmatch(r"[0-9a-f]{32}", json.loads(blocks[0][6:])["id"])
        # with include_usage the usage chunk still follows the error chunk
        r = httpx.post(sim.base_url + "/v1/chat/completions", timeout=30, json={
            **body, "stream": True, "stream_options": {"include_usage": True}})
        blocks = [b for b in r.text.split("\n\n") if b]
        assert blocks[-3].startswith('data: {"error": {') and blocks[-1] == "data: [DONE]"
        usage = json.loads(blocks[-2][6:])
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
