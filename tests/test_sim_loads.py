"""The simulator's `/v1/loads`, which SGLang's model gateway polls for load-aware routing."""

from __future__ import annotations

import threading

import httpx

from tests.simproc import running_sim


def test_loads_report_running_and_waiting_in_sglang_field_names():
    with running_sim("--max-running-requests", "1", tokens_per_s=20) as sim:
        def ask() -> None:
            httpx.post(sim.base_url + "/v1/chat/completions", timeout=20,
                       json={"model": "Qwen/Qwen3-1.7B", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "hi"}]})

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        body = {}
        for _ in range(100):
            body = httpx.get(sim.base_url + "/v1/loads?include=core,disagg,queues,memory", timeout=5).json()
            if body["loads"][0]["num_waiting_reqs"] == 1:
                break
            threading.Event().wait(0.02)
        for t in threads:
            t.join()
    assert body["dp_rank_count"] == 1
    rank = body["loads"][0]
    assert rank["dp_rank"] == 0 and rank["num_running_reqs"] == 1 and rank["num_waiting_reqs"] == 1
    assert rank["max_running_requests"] == 1 and rank["max_total_num_tokens"] > 0
    assert 0 < rank["token_usage"] <= 1
