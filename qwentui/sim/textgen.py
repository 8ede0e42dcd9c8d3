"""Deterministic "model output" and a tokenizer approximation.

Text depends only on the seed, the conversation and the thinking switch, so UI snapshots
are stable. A token is a word-ish piece (leading space kept, digits one by one), which is
roughly how Qwen's BPE splits English; the same counter is used for usage and for the
context-length checks, so the numbers are self-consistent.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Iterator, Sequence

THINK_START, THINK_END = "<think>", "</think>"
EOS_TOKEN_ID = 151645  # Qwen3 <|im_end|>
_TOKEN_RE = re.compile(r"<think>|</think>|<\|[a-z_]+\|>| ?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]+|\n+|\s+")

_REASONING_OPENERS = (
    "Okay, the user is asking about {topic}.",
    "Alright, let me think about {topic}.",
    "Hmm, the question is about {topic}.",
)
_REASONING_WORDS = (
    "first I should recall the basics, then check the details and the edge cases. "
    "the user probably wants a short and clear answer. maybe an example would help. "
    "let me make sure the numbers add up and that nothing important is missing. "
    "I should keep it simple, accurate and friendly. wait, there is one more thing to consider. "
    "so the main point is clear and the answer can be structured in a few steps."
).split(". ")
_ANSWER_WORDS = (
    "this reply comes from the qwentui simulator, not from a real model. "
    "the text is deterministic, so the same prompt always gives the same answer. "
    "tokens are paced to look like a small model on a single GPU. "
    "here is a short summary with a few plain sentences. "
    "you can change the speed with the simulator flags. "
    "a real Qwen3 model would give a more useful answer here"
).split(". ")


def count_text_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def split_tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(messages: Sequence[dict], thinking: bool) -> int:
    """Tokens of the Qwen3 chat template applied to `messages` plus the generation prompt."""
    total = 3  # <|im_start|>assistant\n
    for m in messages:
        total += 4 + count_text_tokens(_content_text(m.get("content")))  # <|im_start|>role\n ... <|im_end|>\n
    return total if thinking else total + 4  # empty <think>\n\n</think>\n\n prefilled


def last_user_text(messages: Sequence[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _content_text(m.get("content"))
    return _content_text(messages[-1].get("content")) if messages else ""


def topic_of(text: str, words: int = 8) -> str:
    parts = text.split()
    topic = " ".join(parts[:words]) + (" …" if len(parts) > words else "")
    return topic or "nothing in particular"


def _rng(seed: int, key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _sentences(rng: random.Random, pool: Sequence[str], target: int, first: str = "") -> str:
    """Sentences from `pool` in a seeded order without repeats (until the pool is used up)."""
    text, order = first, []
    while count_text_tokens(text) < target:
        if not order:
            order = rng.sample(range(len(pool)), len(pool))
        sentence = pool[order.pop()].strip().rstrip(".")
        text += (" " if text else "") + sentence[0].upper() + sentence[1:] + "."
    return text


class Plan:
    """One completion: reasoning (if thinking), the answer, then an endless tail for ignore_eos."""

    def __init__(self, seed: int, key: str, topic: str, thinking: bool) -> None:
        self.rng = _rng(seed, key)
        self.thinking = thinking
        self.reasoning = ""
        if thinking:
            opener = self.rng.choice(_REASONING_OPENERS).format(topic=topic)
            self.reasoning = _sentences(self.rng, _REASONING_WORDS, self.rng.randint(30, 80), opener)
        answer_first = f"(simulated) You asked about “{topic}”."
        self.answer = _sentences(self.rng, _ANSWER_WORDS, self.rng.randint(20, 60), answer_first)

    def natural_tokens(self) -> list[str]:
        """What the model emits before EOS, with Qwen3's `<think>\\n…\\n</think>\\n\\n` wrapper."""
        out: list[str] = []
        if self.thinking:
            out += [THINK_START, "\n", *split_tokens(self.reasoning), "\n", THINK_END, "\n\n"]
        return out + split_tokens(self.answer)

    def tokens(self, min_tokens: int = 0, ignore_eos: bool = False) -> Iterator[str]:
        """Tokens in order; stops (EOS) after the answer unless ignore_eos / min_tokens ask for more."""
        emitted = 0
        for tok in self.natural_tokens():
            emitted += 1
            yield tok
        while ignore_eos or emitted < min_tokens:
            for tok in split_tokens(" " + _sentences(self.rng, _ANSWER_WORDS, 1)):
                emitted += 1
                yield tok
                if not ignore_eos and emitted >= min_tokens:
                    return


def plan_for(seed: int, messages: Sequence[dict], thinking: bool, index: int = 0) -> Plan:
    """`index` > 0 for the extra choices of n > 1 (choice 0 equals the n = 1 answer)."""
    text = last_user_text(messages)
    key = "\x01".join(f"{m.get('role')}:{_content_text(m.get('content'))}" for m in messages)
    return Plan(seed, f"{thinking}\x02{key}" + (f"\x03{index}" if index else ""), topic_of(text), thinking)


def plan_for_prompt(seed: int, prompt: str) -> Plan:
    """Plain completions (`/v1/completions`, `/generate`): no thinking wrapper."""
    return Plan(seed, f"completion\x02{prompt}", topic_of(prompt), thinking=False)
