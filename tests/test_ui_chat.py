"""Pilot tests of the chat pane inside the real app, against a scripted server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import httpx
import pytest
from rich.markdown import Markdown as RichMarkdown
from textual import events
from textual.widgets import Collapsible

from qwentui.config import Config
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.ui.app import make_app
from qwentui.chat.conversation import DONE, FAILED, STOPPED
from qwentui.ui.widgets.chat_input import ChatInput
from qwentui.ui.widgets.messages import AssistantMessage, UserMessage
from tests.chatfakes import CONTENT, REASONING, ScriptedServer, StepClock, answer_chunks, chunk
from tests.waits import wait_until

READY = EngineStatus(EngineState.READY, "ready", "sim", "Qwen/Qwen3-1.7B", "http://127.0.0.1:30000",
                     simulated=True)


def _app(server: ScriptedServer, cfg: Config | None = None, status=READY):
    return make_app(cfg or Config(), client=server.client(), status=status, clock=StepClock())


async def _send(pilot, text: str) -> None:
    pilot.app.chat.prompt.insert(text)
    await pilot.press("enter")


def _save_dialog_open(app) -> bool:
    return app.screen.is_modal and bool(app.screen.query("#path"))


def _answers(app) -> list[AssistantMessage]:
    return list(app.query(AssistantMessage))


async def test_send_streams_a_markdown_answer_with_reasoning_and_stats():
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test(size=(100, 30)) as pilot:
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming)
        await wait_until(pilot, lambda: "prompt" in str(_answers(app)[0].query_one("#stats").render()))
        turns = app.chat.conversation.turns
        assert [t.role for t in turns] == ["user", "assistant"] and turns[1].status == DONE
        assert turns[1].content == "".join(CONTENT) and turns[1].reasoning == "".join(REASONING)
        answer = _answers(app)[0]
        segments = list(answer.query_one("#answer").query(".segment"))
        assert len(segments) == 1 and isinstance(segments[0].content, RichMarkdown)  # rendered as Markdown
        assert segments[0].content.markup == "".join(CONTENT)
        stats = str(answer.query_one("#stats").render())
        assert "9 tok (5 reasoning)" in stats and "12 prompt" in stats and "tok/s" in stats
        assert answer.query_one("#reasoning", Collapsible).collapsed  # answer started → collapsed
        assert [w.text for w in app.query(UserMessage)] == ["hello"]
        body = server.bodies[0]
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["temperature"] == 0.6
        assert body["max_tokens"] == Config().chat.max_tokens
        assert app.chat.prompt.text == ""


async def test_thinking_toggle_reaches_the_request():
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+t")
        assert "thinking off" in app.chat.prompt.border_title
        await _send(pilot, "no thinking please")
        await wait_until(pilot, lambda: len(server.bodies) == 1 and not app.chat.streaming)
        body = server.bodies[0]
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
        assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.8, 20)
        answer = _answers(app)[0]
        assert not answer.has_class("-has-reasoning") and answer.reasoning_text == ""
        await pilot.press("ctrl+t")
        assert "thinking ON" in app.chat.prompt.border_title


async def test_reasoning_expanded_while_thinking_then_collapses_and_toggles():
    gate = asyncio.Event()
    server = ScriptedServer(gate=gate)
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "think first")
        await wait_until(pilot, lambda: _answers(app) and _answers(app)[0].has_class("-has-reasoning"))
        reasoning = _answers(app)[0].query_one("#reasoning", Collapsible)
        assert not reasoning.collapsed and reasoning.title == "Thinking…"
        gate.set()
        await wait_until(pilot, lambda: not app.chat.streaming)
        assert reasoning.collapsed and reasoning.title == "Reasoning (5 tokens)"
        await pilot.press("ctrl+r")
        assert not reasoning.collapsed
        await pilot.press("ctrl+r")
        assert reasoning.collapsed


@pytest.mark.parametrize("key", ["escape", "ctrl+c"])
async def test_stop_key_stops_generation_keeps_partial_and_never_quits(key):
    gate = asyncio.Event()
    server = ScriptedServer(gate=gate)
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "long answer")
        await wait_until(pilot, lambda: _answers(app) and _answers(app)[0].reasoning_text)
        assert app.chat.streaming and "generating" in app.chat.prompt.border_subtitle
        await pilot.press(key)
        await wait_until(pilot, lambda: not app.chat.streaming)
        assert app.is_running and server.closed  # the HTTP stream was closed → SGLang aborts
        turn = app.chat.conversation.turns[1]
        assert turn.status == STOPPED and turn.reasoning == REASONING[0]
        assert "stopped" in str(_answers(app)[0].query_one("#stats").render())
        await pilot.press(key)  # nothing streaming: no stop, still running
        assert app.is_running
        server.gate = None
        await _send(pilot, "again")
        await wait_until(pilot, lambda: len(server.bodies) == 2 and not app.chat.streaming)
        # the stopped exchange had no answer text, so it is not sent back
        assert server.bodies[1]["messages"] == [{"role": "user", "content": "again"}]


async def test_empty_message_is_ignored():
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test() as pilot:
        await pilot.press("enter")
        await _send(pilot, "   \n  ")
        await pilot.pause(0.1)
        assert server.bodies == [] and not _answers(app) and not app.chat.conversation.turns


async def test_context_error_inline_and_chat_stays_usable():
    error = {"object": "error", "message": "The input (70000 tokens) is longer than the model's context "
             "length (40960 tokens).", "type": "BadRequestError", "param": None, "code": 400}
    replies = [httpx.Response(400, json=error), None]

    def reply(body):
        first = replies.pop(0)
        return first if first is not None else ScriptedServer.default(body)

    server = ScriptedServer(reply=reply)
    app = _app(server)
    async with app.run_test() as pilot:
        big = "x" * 200_000  # a 200 KB paste
        app.chat.prompt.insert(big)
        started = time.monotonic()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming)
        assert time.monotonic() - started < 5
        turn = app.chat.conversation.turns[1]
        assert turn.status == FAILED and "context length (40960 tokens)" in turn.error
        assert "context length" in str(_answers(app)[0].query_one("#stats").render())
        await _send(pilot, "short")
        await wait_until(pilot, lambda: len(server.bodies) == 2 and not app.chat.streaming)
        assert server.bodies[1]["messages"] == [{"role": "user", "content": "short"}]
        assert app.chat.conversation.turns[3].status == DONE


async def test_engine_dies_mid_stream_partial_answer_kept_and_marked():
    class Dying(httpx.AsyncByteStream):
        async def __aiter__(self):
            for part in answer_chunks([], ["Partial", " answer"])[:3]:
                yield part
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    server = ScriptedServer(reply=lambda body: httpx.Response(200, stream=Dying()))
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "hi")
        await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming)
        turn = app.chat.conversation.turns[1]
        assert turn.status == FAILED and turn.content == "Partial answer"
        stats = str(_answers(app)[0].query_one("#stats").render())
        assert "lost the connection" in stats and "partial answer kept" in stats
        assert _answers(app)[0].query_one("#answer").text == "Partial answer"
        assert app.chat.conversation.history()[-1] == {"role": "assistant", "content": "Partial answer"}


async def test_malformed_chunk_is_an_error_not_a_crash():
    server = ScriptedServer(reply=lambda body: [chunk({"content": "ok "}), b"data: {not json\n\n"])
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "hi")
        await wait_until(pilot, lambda: app.chat.conversation.turns and not app.chat.streaming)
        assert app.chat.conversation.turns[1].status == FAILED
        assert "malformed chunk" in app.chat.conversation.turns[1].error and app.is_running


async def test_input_disabled_with_reason_until_engine_ready():
    server = ScriptedServer()
    starting = dataclasses.replace(READY, state=EngineState.STARTING, phase="loading weights")
    app = _app(server, status=starting)
    async with app.run_test() as pilot:
        assert app.chat.prompt.disabled
        assert "engine starting: loading weights" in str(app.chat.query_one("#blocked").render())
        assert "STARTING" in str(app.header.render()) and "SIMULATED" in str(app.header.render())
        await pilot.press(*"hi", "enter")
        assert server.bodies == []
        app.engine_status = READY
        await wait_until(pilot, lambda: not app.chat.prompt.disabled and app.chat.prompt.has_focus)
        await _send(pilot, "now")
        await wait_until(pilot, lambda: len(server.bodies) == 1)
        crashed = dataclasses.replace(READY, state=EngineState.CRASHED, error="CUDA out of memory")
        app.engine_status = crashed
        await wait_until(pilot, lambda: app.chat.prompt.disabled)
        assert "engine crashed: CUDA out of memory" in str(app.chat.query_one("#blocked").render())


async def test_multiline_input_and_history():
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test() as pilot:
        prompt = app.chat.prompt
        await pilot.press("a", "ctrl+j", "b", "shift+enter", "c")
        assert prompt.text == "a\nb\nc"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.chat.streaming and server.bodies)
        assert server.bodies[0]["messages"][0]["content"] == "a\nb\nc"
        await _send(pilot, "second")
        await wait_until(pilot, lambda: not app.chat.streaming and len(server.bodies) == 2)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.text == "second"
        await pilot.press("up")
        assert prompt.text == "a\nb\nc"
        await pilot.press("up")  # cursor is on the last line of a 3-line entry: up moves it
        assert prompt.text == "a\nb\nc" and prompt.cursor_location == (1, 1)
        await pilot.press("down", "down")  # back on the last line, then to the next entry
        assert prompt.text == "second"
        await pilot.press("down")
        assert prompt.text == "draft"


async def test_new_chat_copy_and_save(tmp_path):
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+o")  # nothing yet: no crash
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming and server.bodies)
        await pilot.press("ctrl+o")
        assert app.clipboard == "".join(CONTENT)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: _save_dialog_open(app))
        path_input = app.screen.query_one("#path")
        path_input.value = str(tmp_path / "answer.md")
        await pilot.press("enter")
        await wait_until(pilot, lambda: (tmp_path / "answer.md").exists())
        assert (tmp_path / "answer.md").read_text() == "".join(CONTENT)
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: not _answers(app) and app.chat.conversation.turns == [])
        await _send(pilot, "fresh")
        await wait_until(pilot, lambda: len(server.bodies) == 2 and not app.chat.streaming)
        assert server.bodies[1]["messages"] == [{"role": "user", "content": "fresh"}]


async def test_export_conversation_markdown_and_json(tmp_path):
    server = ScriptedServer()
    cfg = Config()
    cfg = dataclasses.replace(cfg, chat=dataclasses.replace(cfg.chat, system_prompt="Be brief."))
    app = _app(server, cfg)
    async with app.run_test() as pilot:
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming and server.bodies)
        assert server.bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
        for fmt in ("md", "json"):
            app.action_export(fmt)
            await wait_until(pilot, lambda: _save_dialog_open(app))
            app.screen.query_one("#path").value = str(tmp_path / f"chat.{fmt}")
            await pilot.press("enter")
            await wait_until(pilot, lambda fmt=fmt: (tmp_path / f"chat.{fmt}").exists())
    md = (tmp_path / "chat.md").read_text()
    assert "## You\n\nhello" in md and "**Hello!**" in md and "> The user greets me" in md
    data = json.loads((tmp_path / "chat.json").read_text())
    assert data["messages"][-1] == {"role": "assistant", "content": "".join(CONTENT)}
    assert data["turns"][1]["usage"]["reasoning_tokens"] == 5


async def test_save_dialog_reports_bad_path(tmp_path):
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming and server.bodies)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: _save_dialog_open(app))
        app.screen.query_one("#path").value = str(tmp_path)  # a directory
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Cannot save" in str(app.screen.query_one("#error").render()))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.screen.is_modal)


async def test_bindings_have_ids_and_palette_commands():
    server = ScriptedServer()
    app = _app(server)
    async with app.run_test():
        bindings = [b for b in app.BINDINGS + ChatInput.BINDINGS]
        assert all(b.id for b in bindings)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Toggle thinking", "Toggle reasoning", "New chat", "Copy last answer",
                      "Save last answer to file", "Export conversation as Markdown", "Export conversation as JSON"):
            assert title in titles


async def test_a_20k_token_reply_does_not_freeze_input():
    """A firehose (20k tokens as fast as the client parses them): keys typed meanwhile land promptly."""
    tokens = [f"word{i} " + ("\n\n" if i % 50 == 49 else "") for i in range(20_000)]
    # All 20k tokens flow at once; only the finish chunks wait until typing was measured, so a
    # loaded machine cannot end the stream before the keys are in.
    end = asyncio.Event()
    server = ScriptedServer(reply=lambda body: answer_chunks([], tokens), gate=end, gate_at=-3)
    app = _app(server)
    async with app.run_test() as pilot:
        started = time.monotonic()
        await _send(pilot, "write a book")
        await wait_until(pilot, lambda: app.chat.streaming and _answers(app) and _answers(app)[0].chunks > 100,
                         timeout=30)  # start-up only; the latency asserts below are the test
        latencies = []
        for i, ch in enumerate("typing"):
            t0 = time.monotonic()
            app.post_message(events.Key(ch, ch))  # as the terminal driver delivers it
            while app.chat.prompt.text != "typing"[:i + 1]:
                await asyncio.sleep(0.005)
            latencies.append(time.monotonic() - t0)
        assert app.chat.streaming, "the stream ended before typing was measured"
        end.set()
        await wait_until(pilot, lambda: not app.chat.streaming, timeout=60)
        elapsed = time.monotonic() - started
        turn = app.chat.conversation.turns[1]
        assert turn.usage.completion_tokens == 20_000 and len(turn.content) == len("".join(tokens))
        segments = len(_answers(app)[0].query(".segment"))
        assert segments < 150  # frozen in ~1-3 KB pieces, not one widget per paragraph
        print("key latencies", [round(x, 3) for x in latencies], "elapsed", round(elapsed, 1), "segments", segments)
        assert max(latencies) < 1.0, f"key latency while streaming: {latencies}"
        assert elapsed < 45, f"20k tokens took {elapsed:.1f} s"


async def test_enter_while_streaming_keeps_the_text_in_the_prompt():
    gate = asyncio.Event()
    server = ScriptedServer(gate=gate)
    app = _app(server)
    async with app.run_test() as pilot:
        await _send(pilot, "first")
        await wait_until(pilot, lambda: app.chat.streaming)
        await _send(pilot, "second")
        await pilot.pause(0.1)
        assert app.chat.prompt.text == "second" and len(server.bodies) == 1
        gate.set()
        await wait_until(pilot, lambda: not app.chat.streaming)
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(server.bodies) == 2)
        assert app.chat.prompt.text == "" and app.chat.prompt.sent_history == ["first", "second"]


async def test_header_fields_and_side_column_for_other_panes():
    from textual.widgets import Static

    app = _app(ScriptedServer())
    async with app.run_test(size=(120, 30)) as pilot:
        app.header.set_field("idle", "idle 12:30")
        app.header.set_field("cost", "¥1.80/h")
        await wait_until(pilot, lambda: str(app.header.render()).rstrip().endswith("idle 12:30  ¥1.80/h"))
        app.header.set_field("idle", "")
        await wait_until(pilot, lambda: "idle" not in str(app.header.render()))
        side = app.query_one("#side")
        assert side.display is False or side.size.width == 0
        app.mount_side(Static("GPU pane", id="gpu"))
        await wait_until(pilot, lambda: side.size.width > 0)
        assert app.query_one("#gpu").region.x > app.chat.region.x


async def test_a_cache_hit_is_marked_on_the_answer_and_does_not_count_as_engine_work():
    from qwentui.cache import open_cache
    from qwentui.chat.cached import CachingClient
    from qwentui.config import CacheConfig

    server = ScriptedServer()
    cache = await open_cache(dataclasses.replace(CacheConfig(), enabled=True))
    app = make_app(Config(), client=CachingClient(server.client(), cache), status=READY, clock=StepClock())
    async with app.run_test(size=(100, 30)) as pilot:
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming and len(app.chat.conversation.turns) == 2)
        first = app.chat.conversation.turns[1]
        assert not str(_answers(app)[0].query_one("#stats").render()).startswith("⚡")
        await app.chat.new_chat()  # the same conversation again: an exact repeat
        await _send(pilot, "hello")
        await wait_until(pilot, lambda: not app.chat.streaming and len(app.chat.conversation.turns) == 2)
        again = app.chat.conversation.turns[1]
        assert len(server.bodies) == 1  # the repeat never reached the engine
        assert (first.cached, first.reached_engine) == (False, True)
        assert (again.cached, again.reached_engine) == (True, False) and again.content == first.content
        await wait_until(pilot, lambda: str(_answers(app)[0].query_one("#stats").render()).startswith("⚡ cached · "))
    await cache.aclose()
