"""The console's prompt cache: a ChatClient wrapper that answers exact repeats from it.

Same key as `batch` (model, messages, Qwen3 sampling for the mode, max_tokens,
thinking). A hit is a `CacheHit` event followed by the stored answer as ordinary
stream events; it never reaches the engine. A complete miss ("stop"/"length") is
stored for next time.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from qwentui.cache import CachedAnswer, PromptCache
from qwentui.chat.client import (CacheHit, ChatClient, ChatResult, Collector, ContentDelta, Event, Finished,
                                 ReasoningDelta, Usage, sampling_for)


class CachingClient:
    """Wraps a ChatClient; everything but `stream_chat` is passed through."""

    def __init__(self, inner: ChatClient, cache: PromptCache, *, on_hit: Callable[[int], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.cache, self.on_hit = inner, cache, on_hit
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream_chat(self, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                          max_tokens: int | None = None, **params: Any) -> AsyncIterator[Event]:
        key = self.cache.key_for(getattr(self.inner, "model", "default"), messages, thinking=thinking,
                                 params={**sampling_for(thinking), **params, "max_tokens": max_tokens})
        hit = await self.cache.get(key)
        if hit is not None:
            for event in replay(hit):
                if isinstance(event, CacheHit) and self.on_hit is not None:
                    self.on_hit(event.saved_tokens)
                yield event
            return
        collector = Collector(self._clock)
        async for event in self.inner.stream_chat(messages, thinking=thinking, max_tokens=max_tokens, **params):
            collector.add(event)
            yield event
        await self.cache.put(key, stored(collector.result()))


def stored(result: ChatResult) -> CachedAnswer:
    """A finished answer (`ChatResult`) as the cache keeps it."""
    return CachedAnswer(result.content, result.reasoning, (result.usage or Usage()).to_dict(),
                        result.finish_reason, result.latency_s)


def replay(answer: CachedAnswer) -> list[Event]:
    """A cached answer as the stream events a live one produces, after a `CacheHit`."""
    usage = Usage.from_json(answer.usage)
    events: list[Event] = [CacheHit(usage.completion_tokens)]
    if answer.reasoning:
        events.append(ReasoningDelta(answer.reasoning))
    if answer.content:
        events.append(ContentDelta(answer.content))
    events += [usage, Finished(answer.finish_reason)]
    return events
