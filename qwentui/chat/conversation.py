"""The conversation behind the chat pane: turns, the history sent to the engine, export.

Plain Python (no Textual) so it is tested and exported without a UI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from qwentui.chat.client import Usage

# Turn status: how an assistant answer ended.
STREAMING, DONE, STOPPED, FAILED = "streaming", "done", "stopped", "failed"


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str
    reasoning: str = ""
    thinking: bool = True  # the mode the answer was requested with
    status: str = DONE
    finish_reason: str = ""
    error: str = ""
    usage: Usage | None = None
    seconds: float | None = None  # first token to last token
    tokens_per_s: float | None = None
    cached: bool = False  # answered by the prompt cache

    @property
    def reached_engine(self) -> bool:
        """Did this answer cost the engine work (and count as activity)? A cache hit did
        not; a failure did only if some text came back."""
        return not self.cached and (self.status != FAILED or bool(self.content or self.reasoning))


@dataclass
class Conversation:
    system_prompt: str = ""
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> int:
        self.turns.append(turn)
        return len(self.turns) - 1

    def update(self, index: int, **changes: Any) -> Turn:
        self.turns[index] = replace(self.turns[index], **changes)
        return self.turns[index]

    def clear(self) -> None:
        self.turns = []

    def history(self) -> list[dict[str, str]]:
        """Messages for the next request. Reasoning is never sent back (Qwen3 guidance);
        an exchange that produced no answer text (error, stopped early) is left out so a
        too-long prompt does not poison every later request."""
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for i, turn in enumerate(self.turns):
            if turn.role == "user":
                answer = self.turns[i + 1] if i + 1 < len(self.turns) else None
                if answer is not None and answer.role == "assistant" and not answer.content \
                        and answer.status != STREAMING:
                    continue
                out.append({"role": "user", "content": turn.content})
            elif turn.content:
                out.append({"role": "assistant", "content": turn.content})
        return out

    def last_answer(self) -> str | None:
        for turn in reversed(self.turns):
            if turn.role == "assistant" and turn.content:
                return turn.content
        return None

    def to_markdown(self) -> str:
        parts = ["# qwentui conversation", ""]
        if self.system_prompt:
            parts += ["**System:** " + self.system_prompt, ""]
        for turn in self.turns:
            if turn.role == "user":
                parts += ["## You", "", turn.content, ""]
                continue
            parts += ["## Qwen", ""]
            if turn.reasoning:
                quoted = "\n".join("> " + line for line in turn.reasoning.strip().splitlines())
                parts += ["<details><summary>Reasoning</summary>", "", quoted, "", "</details>", ""]
            parts += [turn.content, ""]
            if turn.status in (STOPPED, FAILED):
                parts += [f"*({turn.status}{': ' + turn.error if turn.error else ''})*", ""]
        return "\n".join(parts).rstrip() + "\n"

    def to_json(self) -> str:
        turns = [asdict(turn) for turn in self.turns]
        return json.dumps({"system_prompt": self.system_prompt, "messages": self.history(),
                           "turns": turns}, indent=2, ensure_ascii=False) + "\n"
