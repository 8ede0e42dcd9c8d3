"""A real serve session on the simulator replays to a what-if row that matches its ledger bill."""

from __future__ import annotations

import json

import pytest

from qwentui import cli
from qwentui.cost.ledger import Ledger, path_for
from qwentui.sim.launch import DRAIN_POLL_S
from tests.test_idle_serve import MODEL, Serve, serves, write_config  # noqa: F401 - fixture

CONFIG = """[cost]
price_per_hour = 1.8
billing = "engine"
granularity = "minute"
[idle]
timeout = "4s"
warn_before = "1s"
"""


@pytest.mark.slow
def test_serve_activity_replays_to_the_ledgers_billed_cost(tmp_path, serves, capsys):  # noqa: F811
    openai = pytest.importorskip("openai")
    config = write_config(tmp_path, CONFIG, tokens_per_s=40)
    serve = Serve(config)
    serves.append(serve)
    serve.wait_for("engine ready in", timeout=60)
    client = openai.OpenAI(base_url=serve.base_url, api_key="none", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, max_tokens=40,
                                           messages=[{"role": "user", "content": "hello"}])
    assert reply.usage.completion_tokens == 40
    assert serve.wait_exit(timeout=60) == 0, serve.output()
    with Ledger(path_for("sim"), read_only=True) as ledger:
        (row,) = ledger.sessions()
        busy = ledger.activity()
        colds = ledger.cold_starts()
    assert row.stop_reason == "idle" and row.cost is not None
    assert len(busy) == 1 and len(colds) == 1 and 0 < colds[0] < 30, (busy, colds, serve.output())
    assert cli.main(["--config", str(config), "--engine", "sim", "report", "--what-if",
                     "--timeouts", "1s,4s,1m,never", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (current,) = [r for r in data["rows"] if r["timeout_s"] == data["current_timeout_s"] == 4.0]
    assert round(current["cost"], 2) == round(float(row.cost), 2) == 0.03  # one started minute at ¥1.8/h
    assert current["cold_starts"] == 1 and data["granularity"] == "minute"
    assert abs(data["cold_start_s"] - colds[0]) < 1e-3  # stored to the millisecond
    # per second the replay and the real session differ only by the tick and the stop's own time
    assert cli.main(["--config", str(config), "--engine", "sim", "report", "--what-if", "--timeouts", "4s",
                     "--granularity", "second", "--format", "json"]) == 0
    exact = json.loads(capsys.readouterr().out)["rows"][0]
    # (the stop itself takes up to SGLang's 5 s SIGTERM tick plus the scheduler's exit)
    assert abs(exact["billed_hours"] * 3600 - row.minutes * 60) < 3.0 + DRAIN_POLL_S + 1.0, (exact, row.minutes * 60)
