"""UI-free parts of the chat: the conversation (history, export) and text segmentation."""

from __future__ import annotations

import json

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from qwentui.chat.client import Usage
from qwentui.chat.conversation import DONE, FAILED, STOPPED, STREAMING, Conversation, Turn
from qwentui.ui.widgets.messages import format_stats
from qwentui.ui.widgets.segments import _fence_after, take_segment


def test_history_skips_reasoning_and_exchanges_without_an_answer():
    conv = Conversation(system_prompt="Be brief.")
    conv.add(Turn("user", "first"))
    conv.add(Turn("assistant", "one", reasoning="thinking…"))
    conv.add(Turn("user", "x" * 1000))
    conv.add(Turn("assistant", "", status=FAILED, error="too long"))
    conv.add(Turn("user", "stopped early"))
    conv.add(Turn("assistant", "", status=STOPPED))
    conv.add(Turn("user", "partial"))
    conv.add(Turn("assistant", "half", status=STOPPED))
    conv.add(Turn("user", "now"))
    conv.add(Turn("assistant", "", status=STREAMING))
    assert conv.history() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "partial"}, {"role": "assistant", "content": "half"},
        {"role": "user", "content": "now"},
    ]
    assert conv.last_answer() == "half"


def test_update_replaces_the_frozen_turn():
    conv = Conversation()
    i = conv.add(Turn("assistant", "", status=STREAMING))
    turn = conv.update(i, content="done", status=DONE)
    assert conv.turns[i] is turn and turn.content == "done"
    conv.clear()
    assert conv.turns == [] and conv.last_answer() is None


def test_markdown_and_json_export():
    conv = Conversation()
    conv.add(Turn("user", "hi"))
    conv.add(Turn("assistant", "**Hello**", reasoning="line one\nline two",
                  usage=Usage(prompt_tokens=3, completion_tokens=9, reasoning_tokens=4, total_tokens=12)))
    conv.add(Turn("user", "more"))
    conv.add(Turn("assistant", "cut", status=FAILED, error="engine died"))
    md = conv.to_markdown()
    assert md.startswith("# qwentui conversation\n")
    assert "## You\n\nhi\n" in md and "> line one\n> line two" in md and "**Hello**" in md
    assert "*(failed: engine died)*" in md
    data = json.loads(conv.to_json())
    assert data["turns"][1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "reasoning_tokens": 4,
                                         "total_tokens": 12, "cached_tokens": 0}
    assert data["messages"][-1] == {"role": "assistant", "content": "cut"}


def test_format_stats():
    usage = Usage(prompt_tokens=12, completion_tokens=45, reasoning_tokens=40, total_tokens=57)
    assert format_stats(tokens=45, approx=False, seconds=0.44, usage=usage) == (
        "45 tok (40 reasoning) · 12 prompt · 100.0 tok/s · 0.4 s")
    assert format_stats(tokens=3, approx=True, seconds=None) == "~3 tok"
    assert format_stats(tokens=5, approx=False, seconds=1.0, finish_reason="length").endswith("cut at max_tokens")


# ------------------------------------------------------------------ segmentation


def _segments(text: str, min_size: int, max_size: int) -> tuple[list[str], str]:
    out = []
    while (split := take_segment(text, min_size, max_size)) is not None:
        segment, text = split
        out.append(segment)
    return out, text


def test_cuts_at_a_blank_line_past_the_minimum():
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n\n" + "tail"
    assert take_segment(text, 20, 100) == ("a" * 30 + "\n\n", "b" * 30 + "\n\n" + "tail")
    assert take_segment("short\n\n", 20, 100) is None


def test_never_cuts_inside_code_below_the_maximum():
    code = "```python\n" + "x = 1\n\n" * 10 + "```\n"
    assert take_segment(code + "rest", 10, 1000) is None  # blank lines inside code are no cut points
    segment, rest = take_segment(code + "\nrest", 10, 1000)
    assert segment.count("```") == 2 and rest == "rest"


def test_forced_cut_inside_code_closes_and_reopens_the_fence():
    code = "~~~js\n" + "let a = 1;\n" * 50
    segment, rest = take_segment(code, 10, 100)
    assert segment.endswith("~~~\n") and rest.startswith("~~~js\n")
    assert _fence_after("~~~", _fence_after("~~~js", None)) is None


def test_one_huge_line_is_cut_at_a_space():
    text = "word " * 1000
    segment, rest = take_segment(text, 100, 400)
    assert len(segment) <= 400 and segment.endswith(" ") and segment + rest == text


_PIECES = st.sampled_from(["word ", "more words. ", "\n", "\n\n", "```py\n", "```\n", "x = 1\n", "- item\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=200), st.integers(5, 60), st.integers(0, 200))
def test_segments_preserve_the_text_and_keep_fences_balanced(pieces, min_size, extra):
    text = "".join(pieces)
    max_size = min_size + extra
    segments, rest = _segments(text, min_size, max_size)
    rebuilt = ""
    for segment in segments:
        assert segment
        inner = None
        for line in segment.split("\n")[:-1] if segment.endswith("\n") else segment.split("\n"):
            inner = _fence_after(line, inner)
        assert inner is None, f"segment leaves a code block open: {segment!r}"
        rebuilt += segment
    if "```" not in text:
        assert rebuilt + rest == text
    else:  # fence fix-ups close and reopen code (and may break an overlong code line)
        def words(t: str) -> str:
            return t.replace("```py", "").replace("```", "").replace("\n", "")

        assert words(rebuilt + rest) == words(text)


@pytest.mark.parametrize("turn, reached", [
    (Turn("assistant", "hi"), True),
    (Turn("assistant", "hi", cached=True), False),  # the prompt cache answered
    (Turn("assistant", "", status=FAILED, error="cannot connect"), False),
    (Turn("assistant", "", reasoning="hm", status=FAILED, error="stream broke"), True),
])
def test_reached_engine_is_decided_by_the_turn(turn, reached):
    assert turn.reached_engine is reached
