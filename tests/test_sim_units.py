"""Simulator pieces without processes: flags, reasoning parser, text, validation, jobs."""

from __future__ import annotations

import asyncio

import pytest

from qwentui.sim import args as simargs
from qwentui.sim import protocol, textgen
from qwentui.sim.engine import Engine, Job, resources
from qwentui.sim.reasoning import Qwen3Detector, split_once

# -- flags (§1, checklist 1) -------------------------------------------------------------------


def test_model_path_required_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        simargs.parse([])
    assert exc.value.code == 2
    assert "--model-path" in capsys.readouterr().err


def test_unknown_flag_is_argparse_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        simargs.parse(["--model-path", "m", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_served_model_name_defaults_to_model_path_and_rejects_colon():
    a = simargs.parse(["--model", "Qwen/Qwen3-1.7B"])
    assert a.served_model_name == "Qwen/Qwen3-1.7B"
    assert a.port == 30000 and a.host == "127.0.0.1" and a.sim_cold_start == 3.0
    with pytest.raises(SystemExit):
        simargs.parse(["--model-path", "m", "--served-model-name", "a:b"])


def test_every_contract_flag_is_accepted():
    argv = ["--model-path", "m", "--served-model-name", "n", "--host", "127.0.0.1", "--port", "1234",
            "--api-key", "k", "--admin-api-key", "a", "--mem-fraction-static", "0.7", "--context-length", "32Ki",
            "--dtype", "float16", "--kv-cache-dtype", "fp8_e5m2", "--quantization", "fp8",
            "--reasoning-parser", "qwen3", "--tool-call-parser", "qwen25", "--enable-metrics",
            "--enable-metrics-for-all-schedulers", "--max-running-requests", "8", "--chunked-prefill-size", "-1",
            "--max-total-tokens", "100k", "--tp-size", "1", "--log-level", "info", "--log-level-http", "warning",
            "--skip-server-warmup", "--disable-cuda-graph", "--attention-backend", "flashinfer",
            "--trust-remote-code", "--enable-cache-report", "--sampling-defaults", "openai",
            "--default-chat-template-kwargs", '{"enable_thinking": false}', "--stream-response-default-include-usage",
            "--allow-auto-truncate", "--decode-log-interval", "10", "--random-seed", "1", "--enable-memory-saver",
            "--sleep-on-idle", "--watchdog-timeout", "100", "--soft-watchdog-timeout", "50", "--dist-timeout", "9",
            "--uvicorn-access-log-exclude-prefixes", "/health", "/metrics",
            "--sim-cold-start", "250ms", "--sim-tokens-per-s", "99", "--sim-ttft", "0", "--sim-crash-after", "1m",
            "--sim-ignore-sigterm", "--sim-oom", "--sim-seed", "7"]
    a = simargs.parse(argv)
    assert a.context_length == 32768 and a.context_length_explicit
    assert a.max_total_tokens == 100000
    assert a.default_chat_template_kwargs == {"enable_thinking": False}
    assert a.uvicorn_access_log_exclude_prefixes == ["/health", "/metrics"]
    assert (a.sim_cold_start, a.sim_ttft, a.sim_crash_after, a.sim_seed) == (0.25, 0.0, 60.0, 7)
    assert "--kv-cache-dtype" in a.ignored and "--model-path" not in a.ignored


@pytest.mark.parametrize("text,value", [("32k", 32000), ("32Ki", 32768), ("4096", 4096), ("1.5M", 1500000)])
def test_human_readable_int(text, value):
    assert simargs.human_readable_int(text) == value


@pytest.mark.parametrize("flag,value", [("--sim-cold-start", "soon"), ("--sim-tokens-per-s", "0"),
                                        ("--dtype", "int3"), ("--context-length", "lots")])
def test_bad_flag_values_exit_2(flag, value):
    with pytest.raises(SystemExit) as exc:
        simargs.parse(["--model-path", "m", flag, value])
    assert exc.value.code == 2


def test_server_args_dict_is_labelled_simulated_and_keeps_api_key():
    a = simargs.parse(["--model-path", "m", "--api-key", "secret"])
    d = simargs.server_args_dict(a)
    assert d["simulated"] is True and d["api_key"] == "secret" and d["context_length"] is None


# -- reasoning parser (§6) ---------------------------------------------------------------------


def test_qwen3_stream_split_matches_contract_example():
    det = Qwen3Detector(force_reasoning=True)
    pieces = ["<think>", "\nOkay", ", the user", " said hi.</th", "ink>\n\n", "Hello", "!"]
    out = [det.feed(p) for p in pieces]
    assert [r for r, _ in out if r] == ["\nOkay", ", the user", " said hi."]
    assert [c for _, c in out if c] == ["\n\n", "Hello", "!"]
    assert det.finish() == ("", "")


def test_qwen3_non_stream_split_keeps_newlines():
    assert split_once("<think>\nOkay, hi.\n</think>\n\nHello!") == ("\nOkay, hi.\n", "\n\nHello!")


def test_thinking_off_everything_is_content_and_lt_not_held():
    det = Qwen3Detector(force_reasoning=False)
    assert det.feed("a < b") == ("", "a < b")
    assert det.feed("<think>") == ("", "")  # a start tag still switches into reasoning
    assert det.feed("x</think>\n\nY") == ("x", "\n\nY")


def test_unclosed_reasoning_flushes_as_reasoning():
    det = Qwen3Detector(force_reasoning=True)
    assert det.feed("abc") == ("abc", "")
    assert det.feed("def</thi") == ("def", "")
    assert det.finish() == ("</thi", "")


def test_stream_reasoning_false_sends_reasoning_in_one_chunk():
    det = Qwen3Detector(force_reasoning=True, stream_reasoning=False)
    assert [det.feed(p) for p in ["<think>", "ab", "cd</think>", "\n\nX"]] == [
        ("", ""), ("", ""), ("abcd", ""), ("", "\n\nX")]


# -- text ----------------------------------------------------------------------------------------


def test_text_is_deterministic_and_depends_on_seed_and_prompt():
    msgs = [{"role": "user", "content": "What is a GPU?"}]
    a = textgen.plan_for(0, msgs, True).natural_tokens()
    assert a == textgen.plan_for(0, msgs, True).natural_tokens()
    assert a != textgen.plan_for(1, msgs, True).natural_tokens()
    assert a[:2] == ["<think>", "\n"] and "</think>" in a
    answer = "".join(a[a.index("</think>") + 1:])
    assert answer.startswith("\n\n(simulated) You asked about “What is a GPU?”")
    off = textgen.plan_for(0, msgs, False).natural_tokens()
    assert "<think>" not in off and "</think>" not in off


def test_default_lengths_are_modest():
    for i in range(20):
        plan = textgen.plan_for(0, [{"role": "user", "content": f"q{i}"}], True)
        toks = plan.natural_tokens()
        end = toks.index("</think>")
        assert 30 <= end <= 110 and 20 <= len(toks) - end <= 100


def test_ignore_eos_generates_forever_and_min_tokens_extends():
    plan = textgen.plan_for(0, [{"role": "user", "content": "x"}], False)
    gen = plan.tokens(ignore_eos=True)
    assert len([next(gen) for _ in range(5000)]) == 5000
    natural = len(plan.natural_tokens())
    plan2 = textgen.plan_for(0, [{"role": "user", "content": "x"}], False)
    assert len(list(plan2.tokens(min_tokens=natural + 50))) == natural + 50


def test_prompt_tokens_count_template_and_thinking_prefill():
    msgs = [{"role": "user", "content": "hello there"}]
    assert textgen.prompt_tokens(msgs, True) == 3 + 4 + 2
    assert textgen.prompt_tokens(msgs, False) == textgen.prompt_tokens(msgs, True) + 4


# -- validation (§3, §5) -----------------------------------------------------------------------


def _err(fn, *a):
    with pytest.raises(protocol.ApiError) as exc:
        fn(*a)
    return exc.value


def test_unknown_fields_ignored_and_model_not_validated():
    p = protocol.parse_chat({"model": "anything-at-all", "messages": [{"role": "user", "content": "hi"}],
                             "enable_thinking": True, "return_reasoning": True})
    assert p.model == "anything-at-all" and p.template_kwargs == {} and p.separate_reasoning


def test_reasoning_effort_none_and_reasoning_object_set_template_kwargs():
    m = [{"role": "user", "content": "hi"}]
    assert protocol.parse_chat({"messages": m, "reasoning_effort": "none"}).template_kwargs == {
        "thinking": False, "enable_thinking": False}
    assert protocol.parse_chat({"messages": m, "reasoning": {"enabled": True}}).template_kwargs == {
        "thinking": True, "enable_thinking": True}
    merged = protocol.parse_chat({"messages": m}, {"enable_thinking": False}).template_kwargs
    assert merged == {"enable_thinking": False}


def test_validation_errors_are_400_bad_request_with_pydantic_dicts():
    e = _err(protocol.parse_chat, {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})
    assert e.status == 400 and e.body["type"] == "Bad Request" and e.body["code"] == 400
    assert e.body["message"].startswith("1 validation error:\n  {'type': 'float_parsing', 'loc': ('body', 'temperature')")
    assert set(e.body) == {"object", "message", "type", "param", "code"} and e.body["object"] == "error"
    assert "'missing', 'loc': ('body', 'messages')" in _err(protocol.parse_chat, {}).body["message"]
    assert "literal_error" in _err(protocol.parse_chat, {"messages": [{"role": "wizard", "content": "x"}]}).body["message"]


def test_empty_messages_and_lora_are_bad_request_error():
    e = _err(protocol.parse_chat, {"messages": []})
    assert (e.status, e.body["type"], e.body["message"]) == (400, "BadRequestError", "Messages cannot be empty.")
    e = _err(protocol.parse_chat, {"model": "base:adapter", "messages": [{"role": "user", "content": "x"}]})
    assert e.body["message"].startswith("LoRA adapter 'adapter' was requested, but LoRA is not enabled.")


def test_content_type_and_malformed_json():
    e = _err(protocol.parse_json_body, b"{}", "text/plain")
    assert "Unsupported Media Type: Only 'application/json' is allowed" in e.body["message"]
    e = _err(protocol.parse_json_body, b"{nope", "application/json")
    assert e.status == 400 and "json_invalid" in e.body["message"]


def test_context_errors_verbatim():
    e = _err(protocol.check_context, 50, None, 40, False)
    assert e.body["message"] == "The input (50 tokens) is longer than the model's context length (40 tokens)."
    e = _err(protocol.check_context, 30, 20, 40, False)
    assert e.body["message"].startswith("Requested token count exceeds the model's maximum context length of 40 "
                                        "tokens. You requested a total of 50 tokens: 30 tokens from the input "
                                        "messages and 20 tokens for the completion.")
    e = _err(protocol.check_context, 5, 41, 40, True)
    assert e.body["message"] == "max_completion_tokens is too large: 41.This model supports at most 40 completion tokens."


@pytest.mark.parametrize("field,value,message", [
    ("max_tokens", -1, "max_new_tokens must be at least 0, got -1."),
    ("temperature", -0.5, "temperature must be non-negative, got -0.5."),
    ("top_p", 0, "top_p must be in (0, 1], got 0.0."),
])
def test_sampling_value_errors(field, value, message):
    p = protocol.parse_chat({"messages": [{"role": "user", "content": "x"}], field: value})
    assert _err(protocol.check_sampling, p).body["message"] == message


def test_access_log_exclude_prefixes_filter():
    import logging
    from qwentui.sim import logs

    cfg = logs.uvicorn_config(["/health", "/metrics"])
    filt = cfg["filters"]["exclude"]["()"](cfg["filters"]["exclude"]["prefixes"])
    record = lambda path: logging.LogRecord("uvicorn.access", 20, "", 0, "%s - %s %s", ("127.0.0.1:1", "GET", path, "1.1", 200), None)
    assert not filt.filter(record("/health")) and not filt.filter(record("/metrics?x=1"))
    assert filt.filter(record("/v1/models"))
    assert cfg["handlers"]["access"]["stream"] == "ext://sys.stdout"


# -- jobs and the engine -----------------------------------------------------------------------


def test_job_length_and_stop_string():
    job = Job(tokens=iter(["a", " b", " c"]), prompt_tokens=1, max_new_tokens=2, streaming=False)
    assert [job.next_piece(), job.next_piece(), job.next_piece()] == ["a", " b", ""]
    assert (job.finish_reason, job.completion_tokens) == ("length", 2)
    job = Job(tokens=iter(["Hello", " wor", "ld", "!"]), prompt_tokens=1, max_new_tokens=None,
              streaming=False, stop=["world"])
    out = [job.next_piece() for _ in range(3)]  # " wor" is held back until "ld" decides
    assert out == ["Hello", " ", ""] and job.finish_reason == "stop" and job.matched_stop == "world"
    assert job.text == "Hello "
    job = Job(tokens=iter(["Hello", " wor", "m"]), prompt_tokens=1, max_new_tokens=None,
              streaming=False, stop=["world"])
    assert "".join(job.next_piece() for _ in range(4)) == "Hello worm" and job.matched_stop == 151645


def test_engine_queues_beyond_max_running_and_frees_on_cancel():
    a = simargs.parse(["--model-path", "m", "--max-running-requests", "1"])
    engine = Engine(resources(a), tokens_per_s=1000, ttft=0)

    async def consume(job):
        return "".join([p async for p in engine.run(job)])

    async def main():
        plan = textgen.plan_for(0, [{"role": "user", "content": "x"}], False)
        j1 = Job(tokens=plan.tokens(ignore_eos=True), prompt_tokens=1, max_new_tokens=None, streaming=True)
        j2 = Job(tokens=iter(["x"]), prompt_tokens=1, max_new_tokens=None, streaming=True)
        t1 = asyncio.ensure_future(consume(j1))
        await asyncio.sleep(0.05)
        t2 = asyncio.ensure_future(consume(j2))
        await asyncio.sleep(0.05)
        assert (engine.running, engine.queued) == (1, 1)
        t1.cancel()
        assert await t2 == "x"
        assert (engine.running, engine.queued, j1.finish_reason) == (0, 0, "abort")

    asyncio.run(main())


def test_gauges_are_published_lazily_like_sglangs_scheduler():
    """Prefill report, decode log every 40 steps, idle check: never live at scrape time."""
    now = [1000.0]
    a = simargs.parse(["--model-path", "m"])
    engine = Engine(resources(a), tokens_per_s=100, ttft=0, clock=lambda: now[0])

    async def main():
        plan = textgen.plan_for(0, [{"role": "user", "content": "x"}], False)
        job = Job(tokens=plan.tokens(ignore_eos=True), prompt_tokens=5, max_new_tokens=None, streaming=True)
        gen = engine.run(job)
        await gen.__anext__()
        assert engine.running == 1 and engine.gauges["running"] == 0  # the prefill report: batch before it
        engine.publish(throughput=engine.gen_throughput())  # what the decode log loop does
        assert engine.gauges["running"] == 1
        await gen.aclose()
        assert engine.running == 0 and engine.gauges["running"] == 1  # stale until the idle check
        engine.gauges["gen_throughput"] = 42.0
        engine.idle_check()  # running disagrees: republished at once, throughput kept
        assert engine.gauges["running"] == 0 and engine.gauges["gen_throughput"] == 42.0
        now[0] += 29
        engine.idle_check()
        assert engine.gauges["gen_throughput"] == 42.0
        now[0] += 1.5  # 30 s since the last publication: gen_throughput falls to 0
        engine.idle_check()
        assert engine.gauges["gen_throughput"] == 0.0

    asyncio.run(main())


def test_latency_histogram_buckets_are_sglangs():
    """Quoted from TokenizerMetricsCollector (srt/observability/metrics_collector.py)."""
    import re

    from qwentui.sim.metrics import SimMetrics

    ttft = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
    e2e = ttft + [600, 1200, 1800, 2400]
    m = SimMetrics("m")
    m.first_token(True, 0.05)
    m.finished(True, 5, 5, 0.5, False)
    text = m.render().decode()

    def bounds(name):
        return [float(b) for b in re.findall(name + r'_bucket\{[^}]*le="([^"]+)"', text) if b != "+Inf"]

    assert bounds("sglang:time_to_first_token_seconds") == ttft
    assert bounds("sglang:e2e_request_latency_seconds") == e2e
