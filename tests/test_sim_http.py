"""The simulator's HTTP surface against contracts/sglang.md §2–§7 and §10 (one shared process)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.simproc import running_sim

USER = [{"role": "user", "content": "Why is the sky blue?"}]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def main_sim():
    with running_sim("--context-length", "32768", "--sim-ttft", "0", tokens_per_s=20000) as sim:
        yield sim


@pytest.fixture(scope="module")
def client(main_sim):
    with httpx.Client(base_url=main_sim.base_url, timeout=30) as c:
        yield c


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"messages": USER, **body})


def events(text: str) -> list:
    """Parse an SSE body strictly: only `data: ...` events separated by blank lines."""
    assert text.endswith("\n\n")
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def stream(client, **body) -> list:
    r = chat(client, stream=True, **body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return events(r.text)


# -- checklist 5: models -----------------------------------------------------------------------


def test_models_exact_shape(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and len(body["data"]) == 1
    card = body["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by", "root", "parent", "max_model_len"}
    assert card["id"] == card["root"] == "Qwen/Qwen3-1.7B"
    assert (card["object"], card["owned_by"], card["parent"], card["max_model_len"]) == ("model", "sglang", None, 32768)


def test_model_by_name_and_unknown_model(client):
    assert client.get("/v1/models/Qwen/Qwen3-1.7B").json()["id"] == "Qwen/Qwen3-1.7B"
    r = client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_model_info_server_info_and_root(client):
    info = client.get("/model_info").json()
    assert info["reasoning_parser"] == "qwen3" and info["architectures"] == ["Qwen3ForCausalLM"]
    assert client.get("/get_model_info").json() == info
    server = client.get("/server_info").json()
    assert server["version"] == "0.5.23" and server["simulated"] is True and server["context_length"] == 32768
    assert client.get("/").json() == "SGLang is running"


def test_server_info_reports_launch_and_internal_states(client):
    info = client.get("/server_info").json()
    assert info["max_running_requests"] is None and info["api_key"] is None
    assert info["internal_states"][0]["effective_max_running_requests_per_dp"] == 64
    assert "qwentui.sim" in info["launch_command"] and info["max_total_num_tokens"] > 0


def test_sim_fixture_gives_a_ready_simulator(sim):
    """The shared `sim` fixture (tests/conftest.py) for other suites: ready, labelled SIMULATED."""
    assert httpx.get(sim.base_url + "/ready").status_code == 200
    assert any("SIMULATED" in line for line in sim.stderr_lines())


def test_unknown_path_and_method(client):
    assert (client.get("/v2/nothing").status_code, client.get("/v2/nothing").json()) == (404, {"detail": "Not Found"})
    assert client.get("/v1/chat/completions").status_code == 405


# -- checklist 7, 8, 16: semantics and non-stream shape ------------------------------------------


def test_non_stream_thinking_on_by_default(client):
    body = chat(client, model="Qwen3-1.7B", enable_thinking=True, return_reasoning=True).json()
    assert HEX32.match(body["id"]) and body["object"] == "chat.completion" and body["model"] == "Qwen3-1.7B"
    assert body["metadata"] == {"weight_version": "default"}
    choice = body["choices"][0]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason", "matched_stop"}
    assert (choice["finish_reason"], choice["matched_stop"]) == ("stop", 151645)
    msg = choice["message"]
    assert list(msg) == ["role", "content", "reasoning_content"]
    assert msg["reasoning_content"].startswith("\n") and msg["reasoning_content"].endswith("\n")
    assert msg["content"].startswith("\n\n(simulated) You asked about “Why is the sky blue?”")
    assert "<think>" not in msg["content"] + msg["reasoning_content"]
    usage = body["usage"]
    assert usage["completion_tokens"] > usage["reasoning_tokens"] > 0
    assert usage["completion_tokens_details"] == {"reasoning_tokens": usage["reasoning_tokens"]}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_same_prompt_same_text(client):
    a = chat(client).json()["choices"][0]["message"]
    b = chat(client).json()["choices"][0]["message"]
    assert a == b


@pytest.mark.parametrize("extra", [{"chat_template_kwargs": {"enable_thinking": False}}, {"reasoning_effort": "none"}])
def test_thinking_off(client, extra):
    body = chat(client, **extra).json()
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] is None and msg["content"].startswith("(simulated)")
    assert body["usage"]["reasoning_tokens"] == 0 and body["usage"]["completion_tokens_details"] is None


def test_separate_reasoning_false_keeps_think_text_in_content(client):
    msg = chat(client, separate_reasoning=False).json()["choices"][0]["message"]
    assert msg["reasoning_content"] is None and msg["content"].startswith("<think>\n")
    assert "</think>\n\n(simulated)" in msg["content"]


def test_length_with_unclosed_thinking_gives_empty_content(client):
    body = chat(client, max_tokens=5).json()
    choice = body["choices"][0]
    assert (choice["finish_reason"], choice["matched_stop"]) == ("length", None)
    assert choice["message"]["content"] == "" and choice["message"]["reasoning_content"]
    assert body["usage"]["completion_tokens"] == 5 == body["usage"]["reasoning_tokens"]


def test_max_tokens_zero_is_an_empty_length_reply(client):
    body = chat(client, max_tokens=0).json()
    assert body["usage"]["completion_tokens"] == 0 and body["choices"][0]["finish_reason"] == "length"
    evs = stream(client, max_tokens=0)
    assert [c["choices"][0]["delta"] for c in evs[:-1]] == [
        {"reasoning_content": None, "role": "assistant", "content": ""}, {"reasoning_content": None}]


def test_max_completion_tokens_wins_over_max_tokens(client):
    assert chat(client, max_completion_tokens=3, max_tokens=9).json()["usage"]["completion_tokens"] == 3


def test_ignore_eos_long_reply_exact_token_count(client):
    body = chat(client, ignore_eos=True, max_tokens=20000).json()
    assert body["usage"]["completion_tokens"] == 20000 and body["choices"][0]["finish_reason"] == "length"


def test_min_tokens_and_stop_string(client):
    assert chat(client, min_tokens=300).json()["usage"]["completion_tokens"] >= 300
    full = chat(client, chat_template_kwargs={"enable_thinking": False}).json()["choices"][0]["message"]["content"]
    body = chat(client, chat_template_kwargs={"enable_thinking": False}, stop=["asked"]).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == full[:full.index("asked")]
    assert (choice["finish_reason"], choice["matched_stop"]) == ("stop", "asked")


def test_n_choices(client):
    body = chat(client, n=2, max_tokens=4).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 8


# -- checklist 9–15: streaming -----------------------------------------------------------------


def test_stream_framing_role_reasoning_content_finish_usage_done(client):
    evs = stream(client, stream_options={"include_usage": True})
    assert evs[-1] == "[DONE]"
    chunks = evs[:-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and HEX32.match(ids.pop())
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"reasoning_content": None, "role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    kinds = ["r" if d.get("reasoning_content") else "c" for d in deltas]
    assert kinds == sorted(kinds, reverse=True) and "r" in kinds and "c" in kinds  # reasoning, then content
    for d in deltas:
        assert d == {"reasoning_content": d["reasoning_content"]} if d["reasoning_content"] else \
            set(d) == {"reasoning_content", "content"} and d["content"]
    first_content = next(d["content"] for d in deltas if "content" in d)
    assert first_content.startswith("\n\n")
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {"reasoning_content": None}
    assert (finish["finish_reason"], finish["matched_stop"]) == ("stop", 151645)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and list(usage_chunk["usage"]) == [
        "prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details", "reasoning_tokens",
        "completion_tokens_details"]
    assert usage_chunk["usage"]["prompt_tokens_details"] is None
    for c in chunks[:-1]:
        assert list(c) == ["id", "object", "created", "model", "choices"]
        assert list(c["choices"][0]) == ["index", "delta", "logprobs", "finish_reason", "matched_stop"]


def test_stream_text_equals_non_stream(client):
    evs = stream(client)
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in evs[:-1])
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in evs[:-1])
    msg = chat(client).json()["choices"][0]["message"]
    assert (reasoning, content) == (msg["reasoning_content"], msg["content"])


def test_no_usage_chunk_without_include_usage(client):
    evs = stream(client)
    assert all(c["choices"] for c in evs[:-1]) and all("usage" not in c for c in evs[:-1])


def test_continuous_usage_stats_on_every_delta(client):
    evs = stream(client, stream_options={"include_usage": True, "continuous_usage_stats": True})
    running = [c["usage"]["completion_tokens"] for c in evs[1:-3]]
    assert running == sorted(running) and running[-1] > 0
    assert "usage" not in evs[-3]  # the finish chunk
    assert evs[0]["choices"][0]["delta"].get("role") == "assistant" and "usage" not in evs[0]  # nor the role chunk


def test_stream_length_finish(client):
    evs = stream(client, max_tokens=7, stream_options={"include_usage": True})
    assert evs[-3]["choices"][0]["finish_reason"] == "length" and evs[-3]["choices"][0]["matched_stop"] is None
    assert evs[-2]["usage"]["completion_tokens"] == 7
    assert all("content" not in c["choices"][0]["delta"] or c["choices"][0]["delta"]["content"] == ""
               for c in evs[:-2])


def test_stream_validation_error_is_plain_json_400(client):
    r = chat(client, stream=True, temperature="hot")
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["type"] == "Bad Request"


# -- checklist 17: HTTP-level errors -----------------------------------------------------------


def test_errors_over_http(client):
    r = client.post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["object"] == "error"
    assert client.post("/v1/chat/completions", json={"messages": []}).json()["message"] == "Messages cannot be empty."
    r = chat(client, max_tokens=40000)
    assert r.status_code == 400 and r.json()["message"].startswith("max_completion_tokens is too large: 40000.")
    r = chat(client, max_tokens=32760)
    assert r.json()["message"].startswith("Requested token count exceeds the model's maximum context length of 32768")
    long = [{"role": "user", "content": "word " * 33000}]
    r = client.post("/v1/chat/completions", json={"messages": long})
    assert r.status_code == 400 and re.match(r"The input \(\d+ tokens\) is longer than the model's context length "
                                             r"\(32768 tokens\)\.", r.json()["message"])
    assert chat(client, n="x").status_code == 400
    assert chat(client, max_tokens=-3).json()["type"] == "BadRequestError"


# -- /v1/completions, /generate, admin endpoints (checklist 23) -----------------------------------


def test_text_completions(client):
    body = client.post("/v1/completions", json={"prompt": "Once upon a time"}).json()
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 16  # default max_tokens
    r = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 3, "stream": True,
                                             "stream_options": {"include_usage": True}})
    evs = events(r.text)
    assert evs[-1] == "[DONE]" and evs[-2]["usage"] == {"prompt_tokens": 1, "total_tokens": 4,
                                                        "completion_tokens": 3, "reasoning_tokens": 0}


def test_generate_native(client):
    body = client.post("/generate", json={"text": "The capital city of France is",
                                          "sampling_params": {"temperature": 0, "max_new_tokens": 8}}).json()
    assert body["meta_info"]["completion_tokens"] == 8 and body["meta_info"]["finish_reason"]["type"] == "length"


def test_flush_cache_and_memory_occupation(client):
    r = client.post("/flush_cache")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("Cache flushed.\nPlease check backend logs")
    assert client.post("/release_memory_occupation").status_code == 400
    r = client.post("/release_memory_occupation", json={})
    assert (r.status_code, r.text) == (200, "null")
    assert client.post("/resume_memory_occupation", json={"tags": ["weights"]}).text == "null"


def test_pause_and_continue_generation(client):
    assert client.post("/pause_generation").json() == {"message": "Generation paused successfully.", "status": "ok"}
    assert client.get("/ready").status_code == 503
    assert client.post("/continue_generation").json()["status"] == "ok"
    assert client.get("/ready").status_code == 200


# -- checklist 19: metrics ---------------------------------------------------------------------


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_names_labels_and_counters(client):
    before = client.get("/metrics").text
    chat(client, stream=True)
    after = client.get("/metrics").text
    assert "_created" not in after
    assert all(line.startswith(("#", "sglang:")) for line in after.splitlines())
    sched = dict(model_name="Qwen/Qwen3-1.7B", engine_type="unified", tp_rank="0", pp_rank="0", moe_ep_rank="0")
    assert _metric(after, "sglang:num_running_reqs", **sched) == 0
    assert _metric(after, "sglang:num_queue_reqs", **sched) == 0
    assert 0 <= _metric(after, "sglang:token_usage", **sched) <= 1
    assert _metric(after, "sglang:context_len", **sched) == 32768
    key = dict(model_name="Qwen/Qwen3-1.7B", engine_type="unified", is_streaming="true")
    old = _metric(before, "sglang:num_requests_total", **key) if 'is_streaming="true"' in before else 0
    assert _metric(after, "sglang:num_requests_total", **key) == old + 1
    assert _metric(after, "sglang:generation_tokens_total", **key) > 0
    assert _metric(after, "sglang:prompt_tokens_total", **key) > 0
    assert "sglang:e2e_request_latency_seconds_bucket" in after
    assert "# TYPE sglang:num_requests_total counter" in after


def test_health_probe_takes_a_second_and_does_not_count_requests(client):
    before = client.get("/metrics").text
    r = client.get("/health")
    assert r.status_code == 200 and r.content == b"" and r.elapsed.total_seconds() >= 1.0
    after = client.get("/metrics").text
    key = dict(is_streaming="false")
    assert _metric(after, "sglang:num_requests_total", **key) == _metric(before, "sglang:num_requests_total", **key)
    assert _metric(after, "sglang:realtime_tokens_total", mode="decode") > _metric(before, "sglang:realtime_tokens_total", mode="decode")
    r = client.get("/ready")
    assert r.status_code == 200 and r.content == b"" and r.elapsed.total_seconds() < 0.5


# -- a second process: no parser, API key, no metrics, server-wide template kwargs ---------------


@pytest.fixture(scope="module")
def plain_sim():
    with running_sim("--default-chat-template-kwargs", '{"enable_thinking": false}', api_key="s3cret",
                     metrics=False, reasoning_parser=False, tokens_per_s=20000) as sim:
        yield sim


def test_api_key_bearer_only_401_shape_and_exempt_paths(plain_sim):
    url = plain_sim.base_url
    for path in ("/v1/models", "/model_info", "/no/such/path"):
        r = httpx.get(url + path)
        assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"x-api-key": "s3cret"}).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"Authorization": "bearer s3cret"}).status_code == 200
    assert httpx.get(url + "/ready").status_code == 200
    assert httpx.options(url + "/v1/models").status_code != 401
    assert httpx.get(url + "/metrics").status_code == 404  # exempt from auth, absent without --enable-metrics
    assert httpx.post(url + "/flush_cache").status_code == 401


def test_without_reasoning_parser_think_stays_in_content(plain_sim):
    hdr = plain_sim.headers
    body = httpx.post(plain_sim.base_url + "/v1/chat/completions", headers=hdr, timeout=30,
                      json={"messages": USER, "chat_template_kwargs": {"enable_thinking": True}}).json()
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] is None and msg["content"].startswith("<think>\n")
    assert body["usage"]["reasoning_tokens"] == 0 and body["usage"]["completion_tokens_details"] is None


def test_server_default_template_kwargs_turn_thinking_off(plain_sim):
    body = httpx.post(plain_sim.base_url + "/v1/chat/completions", headers=plain_sim.headers, timeout=30,
                      json={"messages": USER}).json()
    assert body["choices"][0]["message"]["content"].startswith("(simulated)")
