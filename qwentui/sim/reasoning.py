"""SGLang's `qwen3` reasoning parser (Qwen3Detector), streaming and one-shot (contract §6).

`force_reasoning` = thinking expected: text counts as reasoning until `</think>` even if no
`<think>` was emitted. Strict prefixes of a tag, and a trailing partial `</think>` or
`<tool_call>` inside reasoning, are held back until the next increment decides.
"""

from __future__ import annotations

THINK_START, THINK_END, TOOL_START = "<think>", "</think>", "<tool_call>"


def _partial_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a strict prefix of one of `tags`."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class Qwen3Detector:
    def __init__(self, force_reasoning: bool = True, stream_reasoning: bool = True) -> None:
        self.in_reasoning = force_reasoning
        self.stream_reasoning = stream_reasoning
        self.stripped_start = False
        self.buffer = ""
        self.held_reasoning = ""  # stream_reasoning=False: reasoning waits for </think>

    def feed(self, new_text: str) -> tuple[str, str]:
        """Returns (reasoning, content) to emit for this increment; either may be ""."""
        self.buffer += new_text
        text = self.buffer
        if self.in_reasoning and any(t != text and t.startswith(text) for t in (THINK_START, THINK_END)):
            return "", ""
        if not self.stripped_start and THINK_START in text:
            text = text.replace(THINK_START, "", 1)
            self.stripped_start = True
            self.in_reasoning = True
        if not self.in_reasoning:
            self.buffer = ""
            return "", text
        return self._in_reasoning_step(text)

    def _in_reasoning_step(self, text: str) -> tuple[str, str]:
        for tag in (THINK_END, TOOL_START):
            idx = text.find(tag)
            if idx >= 0:
                self.buffer = ""
                self.in_reasoning = False
                content = text[idx + len(THINK_END):] if tag == THINK_END else text[idx:]
                return self._release(text[:idx], final=True), content
        keep = _partial_suffix(text, (THINK_END, TOOL_START))
        self.buffer = text[len(text) - keep:] if keep else ""
        return self._release(text[: len(text) - keep], final=False), ""

    def _release(self, reasoning: str, final: bool) -> str:
        if self.stream_reasoning:
            return reasoning
        self.held_reasoning += reasoning
        if not final:
            return ""
        out, self.held_reasoning = self.held_reasoning, ""
        return out

    def finish(self) -> tuple[str, str]:
        """parse_stream_end: flush what is held back (as reasoning while still inside it)."""
        rest, self.buffer = self.buffer, ""
        if self.in_reasoning:
            out = self.held_reasoning + rest
            self.held_reasoning = ""
            return out, ""
        return "", rest


def split_once(text: str, force_reasoning: bool = True) -> tuple[str, str]:
    """Non-streaming split: (reasoning, content); text after the first `</think>` is content."""
    det = Qwen3Detector(force_reasoning=force_reasoning)
    r1, c1 = det.feed(text)
    r2, c2 = det.finish()
    return r1 + r2, c1 + c2
