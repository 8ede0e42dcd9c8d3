"""client.py against the SGLang simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from contextlib import aclosing

import httpx
import pytest

from qwentui.chat.client import (
    ChatClient,
    ContentDelta,
    ContextLengthError,
    Finished,
    ReasoningDelta,
    ServerError,
    StreamError,
    Usage,
)
from tests.simproc import MODEL, running_sim

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def shared_sim():
    with running_sim() as proc:
        yield proc


async def _events(client: ChatClient, messages=HI, **kw) -> list:
    return [e async for e in client.stream_chat(messages, **kw)]


def _text(events, cls) -> str:
    return "".join(e.text for e in events if isinstance(e, cls))


async def test_thinking_stream_has_reasoning_content_usage_and_finish(shared_sim):
    async with ChatClient(shared_sim.base_url) as client:
        events = await _events(client)
    reasoning, content = _text(events, ReasoningDelta), _text(events, ContentDelta)
    assert reasoning and content and "<think>" not in reasoning + content
    finished = [e for e in events if isinstance(e, Finished)]
    usage = [e for e in events if isinstance(e, Usage)]
    assert finished == [Finished("stop")] and len(usage) == 1
    assert 0 < usage[0].reasoning_tokens < usage[0].completion_tokens
    assert usage[0].total_tokens == usage[0].prompt_tokens + usage[0].completion_tokens
    assert events.index(finished[0]) < events.index(usage[0])  # contract §4 order


async def test_thinking_off_really_reaches_the_engine(shared_sim):
    async with ChatClient(shared_sim.base_url) as client:
        events = await _events(client, thinking=False)
    assert _text(events, ReasoningDelta) == ""
    assert _text(events, ContentDelta)
    assert [e for e in events if isinstance(e, Usage)][0].reasoning_tokens == 0


async def test_chat_is_deterministic_and_length_finish(shared_sim):
    async with ChatClient(shared_sim.base_url) as client:
        first, second = await client.chat(HI), await client.chat(HI)
        assert (first.content, first.reasoning) == (second.content, second.reasoning)
        assert first.latency_s > 0 and first.ttft_s is not None
        cut = await client.chat(HI, max_tokens=5)
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 5
    assert cut.content == ""  # thinking never closed within 5 tokens (contract §6)


async def test_same_answer_as_the_openai_sdk(shared_sim):
    openai = pytest.importorskip("openai")
    sdk = openai.AsyncOpenAI(base_url=shared_sim.base_url + "/v1", api_key="unused")
    reply = await sdk.chat.completions.create(
        model="default", messages=HI, temperature=0.7, top_p=0.8,
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}})
    await sdk.close()
    async with ChatClient(shared_sim.base_url) as client:
        ours = await client.chat(HI, thinking=False)
    assert ours.content == reply.choices[0].message.content


async def test_models_and_ready(shared_sim):
    async with ChatClient(shared_sim.base_url) as client:
        assert await client.models() == [MODEL]
        assert await client.ready() is True


async def test_cancel_aborts_the_request_server_side():
    with running_sim(tokens_per_s=40) as sim:
        async with ChatClient(sim.base_url) as client:
            async with aclosing(client.stream_chat(HI)) as stream:
                async for _event in stream:
                    break  # close after the first delta
            metrics = ""
            for _ in range(50):
                metrics = (await client._http.get("/metrics")).text
                if re.search(r"^sglang:num_aborted_requests_total\{[^}]*\} 1\.0$", metrics, re.M):
                    break
                await asyncio.sleep(0.1)
    assert re.search(r"^sglang:num_aborted_requests_total\{[^}]*\} 1\.0$", metrics, re.M), metrics[-2000:]


async def test_context_length_error_is_typed_and_readable():
    with running_sim("--context-length", "64") as sim:
        async with ChatClient(sim.base_url) as client:
            with pytest.raises(ContextLengthError) as info:
                await client.chat([{"role": "user", "content": "word " * 400}])
            assert info.value.status == 400 and "context length" in info.value.message
            assert (await client.chat([{"role": "user", "content": "hi"}], max_tokens=8)).usage


async def test_api_key_required_and_sent():
    with running_sim(api_key="sk-sim-key") as sim:
        async with ChatClient(sim.base_url) as anonymous:
            assert await anonymous.ready() is True  # /ready is exempt from auth
            with pytest.raises(ServerError, match="requires an API key") as info:
                await anonymous.chat(HI)
            assert info.value.status == 401
        async with ChatClient(sim.base_url, api_key="sk-sim-key") as client:
            assert (await client.chat(HI, max_tokens=4)).usage.completion_tokens == 4


async def test_think_fallback_without_reasoning_parser():
    with running_sim(reasoning_parser=False) as sim:
        async with ChatClient(sim.base_url) as client:
            raw = await client._http.post("/v1/chat/completions", json=client.request_body(HI, stream=False))
            assert "<think>" in raw.json()["choices"][0]["message"]["content"]  # the server did not split
            result = await client.chat(HI)
    assert result.reasoning and result.content
    assert "<think>" not in result.content and "</think>" not in result.content + result.reasoning


async def test_engine_dying_mid_stream_keeps_partial_events():
    with running_sim("--sim-crash-after", "1.5s", tokens_per_s=20) as sim:
        async with ChatClient(sim.base_url) as client:
            got = []
            with pytest.raises((StreamError, ServerError)) as info:
                async for event in client.stream_chat([{"role": "user", "content": "write a long essay"}],
                                                      max_tokens=2000):
                    got.append(event)
    assert any(isinstance(e, (ReasoningDelta, ContentDelta)) for e in got)
    assert "engine" in info.value.message


async def test_read_timeout_while_queued(port):
    # A server that accepts the connection but never answers (like a full queue).
    async def hang(reader, writer):
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", port)
    async with server:
        async with ChatClient(f"http://127.0.0.1:{port}", timeout=0.3) as client:
            from qwentui.chat.client import TimeoutError_

            with pytest.raises(TimeoutError_, match="no answer from the engine within 0.3 s"):
                await client.chat(HI)


async def test_transport_level_errors_do_not_leak_httpx(port):
    async with ChatClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(Exception) as info:
            await client.chat(HI)
    assert not isinstance(info.value, httpx.HTTPError)
