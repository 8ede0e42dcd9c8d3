"""OpenAI-compatible chat client for SGLang (contracts/sglang.md §3-§6).

`ChatClient.stream_chat` yields typed events (`ReasoningDelta`, `ContentDelta`,
`Usage`, `Finished`, and `CacheHit` first when a caching client answered without the
engine) and raises a `ChatError` subclass with a readable message on failure, also
mid-stream (events already yielded stay valid: keep the partial answer). Closing the
iterator (break, task cancel, `aclosing`) closes the HTTP stream, which makes SGLang
abort the request.

Everything that talks to the engine shares this module's pieces: `request_body`,
`map_http_error`/`error_from_body`, `Usage.to_dict`/`from_json`, `answer_events` (a
non-streaming answer as events) and `Collector` (events → `ChatResult`).
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from qwentui.errors import QwentuiError

if TYPE_CHECKING:  # httpx is imported on first use: the console paints before it needs it
    import httpx

# Qwen3 model card: thinking T=0.6 top_p=0.95 top_k=20; non-thinking T=0.7 top_p=0.8 top_k=20.
# SGLang applies generation_config (thinking values) when fields are null, so always send them.
_SAMPLING = {
    True: {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
    False: {"temperature": 0.7, "top_p": 0.8, "top_k": 20},
}


def sampling_for(thinking: bool) -> dict:
    """Qwen3's recommended sampling parameters for the given mode (a fresh dict)."""
    return dict(_SAMPLING[bool(thinking)])


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0  # includes reasoning tokens (SGLang)
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0  # only with --enable-cache-report

    def to_dict(self) -> dict[str, int]:
        """The usage stored in batch output and the prompt cache (from_json reads it back)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "reasoning_tokens": self.reasoning_tokens, "total_tokens": self.total_tokens}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Usage":
        details = data.get("completion_tokens_details") or {}
        prompt_details = data.get("prompt_tokens_details") or {}
        reasoning = data.get("reasoning_tokens") or details.get("reasoning_tokens") or 0
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        return cls(prompt_tokens=prompt, completion_tokens=completion, reasoning_tokens=int(reasoning),
                   total_tokens=int(data.get("total_tokens") or prompt + completion),
                   cached_tokens=int(prompt_details.get("cached_tokens") or 0))


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" | "length" | "abort" | "tool_calls" | ...


@dataclass(frozen=True)
class CacheHit:
    """The answer that follows comes from the prompt cache: it never reached the engine."""

    saved_tokens: int  # completion tokens the engine did not have to generate


Event = Union[ReasoningDelta, ContentDelta, Usage, Finished, CacheHit]


@dataclass(frozen=True)
class ChatResult:
    content: str
    reasoning: str
    usage: Usage | None
    finish_reason: str
    latency_s: float
    ttft_s: float | None = None  # time to the first reasoning/content text
    cached: bool = False  # answered from the prompt cache, not by the engine


class Collector:
    """Gathers one answer's events into a `ChatResult`: the one place text is joined."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, timed: bool = True) -> None:
        self._clock, self._timed = clock, timed
        self._start = clock()
        self._ttft: float | None = None
        self._parts: dict[type, list[str]] = {ContentDelta: [], ReasoningDelta: []}
        self.usage: Usage | None = None
        self.finish_reason = ""
        self.cached = False

    def add(self, event: Event) -> None:
        if isinstance(event, (ContentDelta, ReasoningDelta)):
            if self._ttft is None and self._timed:
                self._ttft = self._clock() - self._start
            self._parts[type(event)].append(event.text)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finished):
            self.finish_reason = event.reason
        elif isinstance(event, CacheHit):
            self.cached = True

    def result(self) -> ChatResult:
        return ChatResult("".join(self._parts[ContentDelta]), "".join(self._parts[ReasoningDelta]), self.usage,
                          self.finish_reason, self._clock() - self._start, self._ttft, self.cached)


# ---------------------------------------------------------------- errors


class ChatError(QwentuiError):
    title = "Chat error"


class ConnectError(ChatError):
    title = "Cannot connect"


class ServerError(ChatError):
    """The server answered with an HTTP error or an in-stream error object."""

    title = "Engine error"

    def __init__(self, status: int, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


class ContextLengthError(ServerError):
    """The prompt (plus max_tokens) does not fit the model's context."""

    title = "Too long for the context"


class StreamError(ChatError):
    """The stream broke: malformed chunk, connection lost, ended early."""

    title = "Stream error"


class TimeoutError_(ChatError):
    title = "Timeout"


_CONTEXT_RE = re.compile(r"context length|maximum context|completion tokens", re.I)


def error_from_body(status: int, body: bytes | str) -> ServerError:
    """A ServerError with a human message from any error body SGLang/FastAPI sends."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = _message_from(data) if isinstance(data, dict) else None
    if status == 401:
        return ServerError(status, "unauthorized: the engine requires an API key "
                           "(set engine.api_key or QWENTUI_ENGINE_API_KEY)")
    if status == 403:
        return ServerError(status, "forbidden: this key may not use that endpoint")
    if message is None:
        snippet = " ".join(text.split())[:200]
        message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    cls = ContextLengthError if status == 400 and _CONTEXT_RE.search(message) else ServerError
    return cls(status, message)


def _message_from(data: dict) -> str | None:
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if isinstance(err, str):
        return err
    if data.get("object") == "error" or "message" in data:
        return str(data.get("message"))
    if "detail" in data:
        return str(data["detail"])
    return None


# ---------------------------------------------------------------- SSE framing

_EOL = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """Incremental `text/event-stream` decoder: bytes in, `data` payloads out.

    Handles any chunk boundaries (also inside CRLF and multi-byte characters),
    comments and other fields; invalid UTF-8 is replaced, not fatal.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._data: list[str] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        return self._lines(self._utf8.decode(chunk))

    def close(self) -> list[str]:
        """Flush at end of stream; a last event without its blank line still counts."""
        out = self._lines(self._utf8.decode(b"", final=True))
        if self._pending:
            self._field(self._pending)
            self._pending = ""
        if self._data:
            out.append("\n".join(self._data))
            self._data = []
        return out

    def _lines(self, text: str) -> list[str]:
        if self._skip_lf and text:
            text = text[1:] if text.startswith("\n") else text
            self._skip_lf = False
        text = self._pending + text
        out: list[str] = []
        start = 0
        for match in _EOL.finditer(text):
            line = text[start:match.start()]
            start = match.end()
            if match.group() == "\r" and start == len(text):
                self._skip_lf = True  # a "\n" may follow in the next chunk
            if line:
                self._field(line)
            elif self._data:
                out.append("\n".join(self._data))
                self._data = []
        self._pending = text[start:]
        return out

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)


# ---------------------------------------------------------------- <think> fallback


class ThinkSplitter:
    """Split `<think>…</think>` out of content when the server has no reasoning parser.

    Streaming-safe: text that may be the start of a tag is held back until it is not.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.state = "start"  # start -> reasoning -> content, or start -> content
        self._buf = ""

    def feed(self, text: str) -> list[Event]:
        self._buf += text
        out: list[Event] = []
        if self.state == "start":
            head = self._buf.lstrip()
            if head.startswith(self.OPEN):
                self._buf = head[len(self.OPEN):]
                self.state = "reasoning"
            elif not head or self.OPEN.startswith(head):
                return out
            else:
                self.state = "content"
        if self.state == "reasoning":
            end = self._buf.find(self.CLOSE)
            if end >= 0:
                if end:
                    out.append(ReasoningDelta(self._buf[:end]))
                self._buf = self._buf[end + len(self.CLOSE):]
                self.state = "content"
            else:
                keep = _partial_suffix(self._buf, self.CLOSE)
                ready, self._buf = self._buf[:len(self._buf) - keep], self._buf[len(self._buf) - keep:]
                if ready:
                    out.append(ReasoningDelta(ready))
                return out
        if self.state == "content" and self._buf:
            out.append(ContentDelta(self._buf))
            self._buf = ""
        return out

    def flush(self) -> list[Event]:
        text, self._buf = self._buf, ""
        if not text:
            return []
        return [ReasoningDelta(text)] if self.state == "reasoning" else [ContentDelta(text)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


# ---------------------------------------------------------------- chunks → events


class ChunkParser:
    """Turns SSE `data` payloads into events; raises on errors and malformed chunks."""

    def __init__(self) -> None:
        self.done = False
        self.finished = False
        self._server_splits = False  # reasoning_content seen: the server parses <think>
        self._splitter = ThinkSplitter()

    def payload(self, data: str) -> list[Event]:
        if data.strip() == "[DONE]":
            self.done = True
            return self._splitter.flush()
        try:
            obj = json.loads(data)
        except ValueError:
            raise StreamError(f"malformed chunk from the engine: {data[:120]!r}") from None
        if not isinstance(obj, dict):
            raise StreamError(f"malformed chunk from the engine: {data[:120]!r}")
        if obj.get("error") is not None:
            err = obj["error"]
            status = err.get("code") if isinstance(err, dict) else None
            raise error_from_body(status if isinstance(status, int) else 500, json.dumps(obj))
        return self._chunk(obj)

    def _chunk(self, obj: dict) -> list[Event]:
        out: list[Event] = []
        choices = obj.get("choices") or []
        if not isinstance(choices, list):
            raise StreamError("malformed chunk from the engine: 'choices' is not a list")
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise StreamError("malformed chunk from the engine: a choice is not an object")
            out += self._delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                out += self._splitter.flush()
                out.append(Finished(str(choice["finish_reason"])))
                self.finished = True
        usage = obj.get("usage")
        if isinstance(usage, dict):
            out.append(Usage.from_json(usage))
        return out

    def _delta(self, delta: dict) -> list[Event]:
        out: list[Event] = []
        reasoning, content = delta.get("reasoning_content"), delta.get("content")
        if reasoning:
            if not self._server_splits:
                self._server_splits = True
                out += self._splitter.flush()
            out.append(ReasoningDelta(str(reasoning)))
        if content:
            if self._server_splits:
                out.append(ContentDelta(str(content)))
            else:
                out += self._splitter.feed(str(content))
        return out

    def end(self) -> list[Event]:
        return self._splitter.flush()


def parse_sse_bytes(chunks: Sequence[bytes]) -> list[Event]:
    """All events of a recorded stream (tests, replay). Raises like `stream_chat`."""
    decoder, parser = SSEDecoder(), ChunkParser()
    events: list[Event] = []
    for chunk in chunks:
        for data in decoder.feed(chunk):
            if not parser.done:
                events += parser.payload(data)
    for data in decoder.close():
        if not parser.done:
            events += parser.payload(data)
    return events + parser.end()


def answer_events(data: Any) -> list[Event]:
    """A non-streaming answer (`"stream": false`) as the events its stream would give:
    the message is one delta, so the `<think>` fallback is the same."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise StreamError(f"unexpected answer from the engine: {json.dumps(data)[:120]!r}") from None
    if not isinstance(message, dict):
        raise StreamError(f"unexpected answer from the engine: {json.dumps(data)[:120]!r}")
    parser = ChunkParser()
    usage = data.get("usage")
    chunk = {"choices": [{"delta": message, "finish_reason": choice.get("finish_reason")}], "usage": usage}
    return parser.payload(json.dumps(chunk)) + parser.end()


# ---------------------------------------------------------------- requests


def request_body(model: str, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                 max_tokens: int | None = None, stream: bool = True, **params: Any) -> dict:
    """The JSON body of a chat request (Qwen3 sampling per mode; explicit params win)."""
    template_kwargs = dict(params.pop("chat_template_kwargs", None) or {})
    template_kwargs["enable_thinking"] = bool(thinking)
    body: dict[str, Any] = {"model": params.pop("model", model), "messages": list(messages),
                            "stream": stream, **sampling_for(thinking), **params,
                            "chat_template_kwargs": template_kwargs}
    if stream:
        body["stream_options"] = {"include_usage": True, **(params.get("stream_options") or {})}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def map_http_error(exc: Exception, base_url: str, timeout: float) -> ChatError:
    """An httpx failure as the typed error users read."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectError(f"cannot connect to {base_url} (timed out): is the engine running?")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"cannot connect to {base_url}: is the engine running?")
    if isinstance(exc, httpx.ReadTimeout):
        return TimeoutError_(f"no answer from the engine within {timeout:g} s")
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError_(f"the engine timed out: {type(exc).__name__}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return StreamError("lost the connection to the engine mid-answer (did it crash?)")
    return ChatError(f"request to the engine failed: {exc or type(exc).__name__}")


# ---------------------------------------------------------------- client


class ChatClient:
    """Async client for one engine. `timeout` bounds the wait for each chunk,
    including the first one (headers arrive only with the first token, so a queued
    request waits here); connecting is bounded by `connect_timeout`."""

    def __init__(self, base_url: str, *, api_key: str = "", model: str = "default",
                 timeout: float = 600.0, connect_timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self._clock = clock
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout, write=30.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def request_body(self, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                     max_tokens: int | None = None, stream: bool = True, **params: Any) -> dict:
        """The JSON body sent for a chat request (sampling per mode, params win)."""
        return request_body(self.model, messages, thinking=thinking, max_tokens=max_tokens, stream=stream,
                            **params)

    async def stream_chat(self, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                          max_tokens: int | None = None, **params: Any) -> AsyncIterator[Event]:
        import httpx

        body = self.request_body(messages, thinking=thinking, max_tokens=max_tokens, **params)
        decoder, parser = SSEDecoder(), ChunkParser()
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    raise error_from_body(response.status_code, await response.aread())
                async for chunk in response.aiter_bytes():
                    for data in decoder.feed(chunk):
                        for event in parser.payload(data):
                            yield event
                        if parser.done:
                            return
                for data in decoder.close():
                    for event in parser.payload(data):
                        yield event
        except httpx.HTTPError as exc:
            raise self._map_http_error(exc) from None
        for event in parser.end():
            yield event
        if not parser.done and not parser.finished:
            raise StreamError("the engine closed the stream before the answer finished (did it crash?)")

    async def chat(self, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                   max_tokens: int | None = None, **params: Any) -> ChatResult:
        """One complete answer, gathered from the stream (so timeouts are per chunk)."""
        collector = Collector(self._clock)
        async for event in self.stream_chat(messages, thinking=thinking, max_tokens=max_tokens, **params):
            collector.add(event)
        return collector.result()

    async def models(self) -> list[str]:
        import httpx

        try:
            response = await self._http.get("/v1/models")
        except httpx.HTTPError as exc:
            raise self._map_http_error(exc) from None
        if response.status_code >= 400:
            raise error_from_body(response.status_code, response.content)
        try:
            return [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise StreamError("the engine's /v1/models answer is not a model list") from None

    async def ready(self) -> bool:
        """GET /ready (cheap flag check). Never /health: that runs a real generation."""
        import httpx

        try:
            response = await self._http.get("/ready", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _map_http_error(self, exc: Exception) -> ChatError:
        return map_http_error(exc, self.base_url, self.timeout)
