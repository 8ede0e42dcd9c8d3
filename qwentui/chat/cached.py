"""The console's prompt cache: a ChatClient wrapper that answers exact repeats from it.

Same key as `batch` (model, messages, Qwen3 sampling for the mode, max_tokens,
thinking). A hit replays the stored answer as ordinary stream events and never reaches
the engine; a complete miss ("stop"/"length") is stored for next time. `last_hit` says
whether the latest `stream_chat` was served from the cache, so the UI can mark it.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from qwentui.cache import CachedAnswer, PromptCache
from qwentui.chat.client import ContentDelta, Finished, ReasoningDelta, Usage, sampling_for


def _usage_dict(usage: Usage | None) -> dict:
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0, "total_tokens": 0}
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "total_tokens": usage.total_tokens}


class CachingClient:
    """Wraps a ChatClient; everything but `stream_chat` is passed through."""

    def __init__(self, inner: Any, cache: PromptCache, *, on_hit: Callable[[int], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.cache, self.on_hit = inner, cache, on_hit
        self._clock = clock
        self.last_hit = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream_chat(self, messages: Sequence[Mapping[str, Any]], *, thinking: bool = True,
                          max_tokens: int | None = None, **params: Any) -> AsyncIterator[Any]:
        self.last_hit = False
        key = self.cache.key_for(getattr(self.inner, "model", "default"), messages, thinking=thinking,
                                 params={**sampling_for(thinking), **params, "max_tokens": max_tokens})
        hit = await self.cache.get(key)
        if hit is not None:
            self.last_hit = True
            if self.on_hit is not None:
                self.on_hit(int(hit.usage.get("completion_tokens") or 0))
            for event in replay(hit):
                yield event
            return
        start, parts, usage, finish = self._clock(), {"r": [], "c": []}, None, ""
        async for event in self.inner.stream_chat(messages, thinking=thinking, max_tokens=max_tokens, **params):
            if isinstance(event, ReasoningDelta):
                parts["r"].append(event.text)
            elif isinstance(event, ContentDelta):
                parts["c"].append(event.text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Finished):
                finish = event.reason
            yield event
        await self.cache.put(key, CachedAnswer("".join(parts["c"]), "".join(parts["r"]), _usage_dict(usage),
                                               finish, self._clock() - start))


def replay(answer: CachedAnswer) -> list[Any]:
    """A cached answer as the stream events a live one produces."""
    events: list[Any] = []
    if answer.reasoning:
        events.append(ReasoningDelta(answer.reasoning))
    if answer.content:
        events.append(ContentDelta(answer.content))
    u = answer.usage
    events.append(Usage(prompt_tokens=int(u.get("prompt_tokens") or 0),
                        completion_tokens=int(u.get("completion_tokens") or 0),
                        reasoning_tokens=int(u.get("reasoning_tokens") or 0),
                        total_tokens=int(u.get("total_tokens") or 0)))
    events.append(Finished(answer.finish_reason))
    return events
