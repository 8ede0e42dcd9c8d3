"""client.py without a server: SSE framing, <think> fallback, request body, errors."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwentui.chat.client import (
    ChatClient,
    ConnectError,
    ContentDelta,
    ContextLengthError,
    Finished,
    ReasoningDelta,
    ServerError,
    SSEDecoder,
    StreamError,
    ThinkSplitter,
    TimeoutError_,
    Usage,
    error_from_body,
    parse_sse_bytes,
    sampling_for,
)

RID = "3f2a9c0e5b7d4e1f8a6b2c4d0e9f1a7b"
HEAD = f'{{"id":"{RID}","object":"chat.completion.chunk","created":1767225600,"model":"default",'
TAIL = ',"logprobs":null,"finish_reason":null,"matched_stop":null}]}'

# contracts/sglang.md §4, verified output (Qwen3, thinking on, include_usage).
VERIFIED = (
    "data: " + HEAD + '"choices":[{"index":0,"delta":{"reasoning_content":null,"role":"assistant","content":""}' + TAIL + "\n\n"
    "data: " + HEAD + '"choices":[{"index":0,"delta":{"reasoning_content":"Okay, the user"}' + TAIL + "\n\n"
    "data: " + HEAD + '"choices":[{"index":0,"delta":{"reasoning_content":null,"content":"\\n\\nHello!"}' + TAIL + "\n\n"
    "data: " + HEAD + '"choices":[{"index":0,"delta":{"reasoning_content":null},"logprobs":null,'
    '"finish_reason":"stop","matched_stop":151645}]}\n\n'
    "data: " + HEAD + '"choices":[],"usage":{"prompt_tokens":12,"total_tokens":57,"completion_tokens":45,'
    '"prompt_tokens_details":null,"reasoning_tokens":40,"completion_tokens_details":{"reasoning_tokens":40}}}\n\n'
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    ReasoningDelta("Okay, the user"),
    ContentDelta("\n\nHello!"),
    Finished("stop"),
    Usage(prompt_tokens=12, completion_tokens=45, reasoning_tokens=40, total_tokens=57),
]


def _content_chunk(text: str) -> str:
    body = {"choices": [{"index": 0, "delta": {"reasoning_content": None, "content": text}, "finish_reason": None}]}
    return "data: " + json.dumps(body) + "\n\n"


# Same answer from a server without --reasoning-parser: tags inline, split across chunks.
INLINE = ("".join(_content_chunk(t) for t in ["<th", "ink>\nOkay", ", the user", " said hi.</th", "ink>\n\n", "Hello", "!"])
          + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' + "data: [DONE]\n\n").encode()


def test_verified_example_parses_to_typed_events():
    assert parse_sse_bytes([VERIFIED]) == EXPECTED


def test_every_single_cut_point_gives_the_same_events():
    for cut in range(len(VERIFIED) + 1):
        assert parse_sse_bytes([VERIFIED[:cut], VERIFIED[cut:]]) == EXPECTED, cut


def test_byte_by_byte_crlf_and_cr_framing():
    for eol in (b"\r\n", b"\r"):
        stream = VERIFIED.replace(b"\n\n", eol + eol)
        assert parse_sse_bytes([bytes([b]) for b in stream]) == EXPECTED


@st.composite
def _splits(draw, data: bytes):
    cuts = sorted(draw(st.sets(st.integers(0, len(data)), max_size=40)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_hypothesis_any_split_any_line_ending(data, eol):
    stream = VERIFIED.replace(b"\n", eol)
    # keep-alives and comments between events must not change anything
    stream = b": keep-alive" + eol + stream.replace(b"data: [DONE]", b":ping" + eol + eol + b"data: [DONE]")
    assert parse_sse_bytes(data.draw(_splits(stream))) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_hypothesis_inline_think_tags_split_anywhere(data):
    events = parse_sse_bytes(data.draw(_splits(INLINE)))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert (reasoning, content) == ("\nOkay, the user said hi.", "\n\nHello!")
    assert events[-1] == Finished("stop")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>/thinkab \n", max_size=30), st.text(alphabet="<>/thinkab \n", max_size=30),
       st.data())
def test_hypothesis_think_splitter_is_chunking_invariant(reasoning, answer, data):
    text = f"<think>{reasoning}</think>{answer}"
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=10)))
    bounds = [0, *cuts, len(text)]
    splitter = ThinkSplitter()
    events = [e for a, b in zip(bounds, bounds[1:]) for e in splitter.feed(text[a:b])] + splitter.flush()
    got_r = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    got_c = "".join(e.text for e in events if isinstance(e, ContentDelta))
    first_close = text.find("</think>", len("<think>"))
    assert got_r == text[len("<think>"):first_close]
    assert got_c == text[first_close + len("</think>"):]


def test_think_splitter_plain_text_and_unclosed_reasoning():
    s = ThinkSplitter()
    assert s.feed("<") == []  # may be a tag
    assert s.feed("b>bold") == [ContentDelta("<b>bold")]
    s = ThinkSplitter()
    assert s.feed("<think>all reasoning, cut by max_tokens </thi") == [
        ReasoningDelta("all reasoning, cut by max_tokens ")]
    assert s.flush() == [ReasoningDelta("</thi")]


def test_server_side_reasoning_disables_the_fallback():
    stream = ('data: {"choices":[{"delta":{"reasoning_content":"why"}}]}\n\n'
              + _content_chunk("<think>is literal</think>") + "data: [DONE]\n\n").encode()
    assert parse_sse_bytes([stream]) == [ReasoningDelta("why"), ContentDelta("<think>is literal</think>")]


def test_non_utf8_bytes_are_replaced_and_split_multibyte_chars_survive():
    text = "data: " + json.dumps({"choices": [{"delta": {"content": "é→"}}]}, ensure_ascii=False) + "\n\n"
    raw = text.encode()
    assert parse_sse_bytes([bytes([b]) for b in raw]) == [ContentDelta("é→")]
    bad = b'data: {"choices":[{"delta":{"content":"a\xff\xfeb"}}]}\n\n'
    assert parse_sse_bytes([bad]) == [ContentDelta("a\ufffd\ufffdb")]


def test_malformed_chunk_is_a_stream_error():
    with pytest.raises(StreamError, match="malformed chunk"):
        parse_sse_bytes([b'data: {"choices": [\n\n'])
    with pytest.raises(StreamError):
        parse_sse_bytes([b'data: [1, 2]\n\n'])


def test_error_object_mid_stream_raises_after_partial_events():
    stream = (_content_chunk("partial") + 'data: {"error": {"object": "error", "message": "Request running '
              'timeout reached.", "type": "SERVICE_UNAVAILABLE", "param": null, "code": 503}}\n\n'
              "data: [DONE]\n\n").encode()
    decoder_events = []
    with pytest.raises(ServerError) as info:
        from qwentui.chat.client import ChunkParser

        parser = ChunkParser()
        for data in SSEDecoder().feed(stream):
            decoder_events += parser.payload(data)
    assert decoder_events == [ContentDelta("partial")]
    assert info.value.status == 503 and "timeout reached" in info.value.message


def test_sse_multiline_data_and_other_fields():
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\nid: 1\ndata: a\ndata:b\nretry: 5\n\n") == ["a\nb"]
    assert decoder.feed(b"data: tail-without-blank-line") == []
    assert decoder.close() == ["tail-without-blank-line"]


@pytest.mark.parametrize(("status", "body", "cls", "text"), [
    (401, b'{"error":"Unauthorized"}', ServerError, "requires an API key"),
    (400, json.dumps({"object": "error", "message": "The input (9000 tokens) is longer than the model's context "
                      "length (8192 tokens).", "type": "BadRequestError", "param": None, "code": 400}).encode(),
     ContextLengthError, "longer than the model's context length"),
    (400, b'{"object":"error","message":"Messages cannot be empty.","type":"BadRequestError","param":null,"code":400}',
     ServerError, "Messages cannot be empty."),
    (404, b'{"detail":"Not Found"}', ServerError, "Not Found"),
    (500, b"<html>boom</html>", ServerError, "HTTP 500: <html>boom</html>"),
    (503, b"", ServerError, "HTTP 503"),
])
def test_error_bodies_become_human_messages(status, body, cls, text):
    err = error_from_body(status, body)
    assert type(err) is cls and err.status == status and text in err.message


def test_sampling_defaults_per_mode():
    assert sampling_for(True) == {"temperature": 0.6, "top_p": 0.95, "top_k": 20}
    assert sampling_for(False) == {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    sampling_for(True)["temperature"] = 9  # a fresh dict each time
    assert sampling_for(True)["temperature"] == 0.6


# ------------------------------------------------------------ over HTTP (MockTransport)


def _client(handler, **kw) -> tuple[ChatClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return ChatClient("http://127.0.0.1:9", transport=httpx.MockTransport(record), **kw), seen


def _sse(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})


async def test_request_body_thinking_off_and_api_key():
    client, seen = _client(lambda r: _sse(VERIFIED), api_key="sk-test", model="qwen3")
    events = [e async for e in client.stream_chat([{"role": "user", "content": "hi"}], thinking=False,
                                                  max_tokens=64, seed=7)]
    assert events == EXPECTED
    body = json.loads(seen[0].content)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.8, 20)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64 and body["seed"] == 7 and body["model"] == "qwen3"
    assert "enable_thinking" not in body  # SGLang ignores top-level flags (contract §3)
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    await client.aclose()


async def test_params_override_sampling_and_merge_template_kwargs():
    client, seen = _client(lambda r: _sse(VERIFIED))
    await client.chat([{"role": "user", "content": "x"}], thinking=True, temperature=0.0,
                      chat_template_kwargs={"foo": 1})
    body = json.loads(seen[0].content)
    assert body["temperature"] == 0.0 and body["top_p"] == 0.95
    assert body["chat_template_kwargs"] == {"foo": 1, "enable_thinking": True}
    assert "authorization" not in seen[0].headers


async def test_chat_gathers_a_result():
    ticks = iter(range(100))
    client, _ = _client(lambda r: _sse(VERIFIED), clock=lambda: float(next(ticks)))
    result = await client.chat([{"role": "user", "content": "hi"}])
    assert (result.content, result.reasoning, result.finish_reason) == ("\n\nHello!", "Okay, the user", "stop")
    assert result.usage.completion_tokens == 45 and result.latency_s > 0 and result.ttft_s == 1.0


async def test_http_400_context_error_is_typed():
    body = {"object": "error", "message": "Requested token count exceeds the model's maximum context length of "
            "8192 tokens.", "type": "BadRequestError", "param": None, "code": 400}
    client, _ = _client(lambda r: httpx.Response(400, json=body))
    with pytest.raises(ContextLengthError, match="maximum context length"):
        await client.chat([{"role": "user", "content": "x" * 10}])


async def test_stream_cut_without_done_is_a_stream_error():
    client, _ = _client(lambda r: _sse(_content_chunk("half an ans").encode()))
    got = []
    with pytest.raises(StreamError, match="before the answer finished"):
        async for event in client.stream_chat([{"role": "user", "content": "x"}]):
            got.append(event)
    assert got == [ContentDelta("half an ans")]


async def test_read_timeout_and_protocol_errors_are_mapped():
    def slow(request):
        raise httpx.ReadTimeout("read", request=request)

    client, _ = _client(slow, timeout=3)
    with pytest.raises(TimeoutError_, match="within 3 s"):
        await client.chat([{"role": "user", "content": "x"}])

    def dropped(request):
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    client, _ = _client(dropped)
    with pytest.raises(StreamError, match="lost the connection"):
        await client.chat([{"role": "user", "content": "x"}])


async def test_connection_refused_says_is_the_engine_running(port):
    client = ChatClient(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectError, match="is the engine running"):
        await client.chat([{"role": "user", "content": "hi"}])
    assert await client.ready() is False
    with pytest.raises(ConnectError):
        await client.models()
    await client.aclose()


async def test_models_and_ready_via_transport():
    def handler(request):
        if request.url.path == "/ready":
            return httpx.Response(503)
        return httpx.Response(200, json={"object": "list", "data": [{"id": "Qwen/Qwen3-1.7B"}]})

    client, seen = _client(handler)
    assert await client.models() == ["Qwen/Qwen3-1.7B"]
    assert await client.ready() is False
    assert [r.url.path for r in seen] == ["/v1/models", "/ready"]


async def test_cancel_closes_the_http_stream():
    closed = asyncio.Event()

    class Slow(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield _content_chunk("first").encode()
            await asyncio.sleep(30)
            yield b""

        async def aclose(self):
            closed.set()

    client, _ = _client(lambda r: httpx.Response(200, stream=Slow()))

    async def consume(out):
        async for event in client.stream_chat([{"role": "user", "content": "x"}]):
            out.append(event)

    out: list = []
    task = asyncio.create_task(consume(out))
    while not out:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 2)
    assert out == [ContentDelta("first")]
