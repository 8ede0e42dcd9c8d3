"""Cost per answer (an estimate) and per 1K tokens in batch, consistent with the ledger."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from qwentui.cost.answers import AnswerCost, cost_text, requests_now
from qwentui.cost.billing import Billing
from qwentui.cost.ledger import Ledger
from qwentui.engine.status import EngineState
from qwentui.ui.widgets.messages import AssistantMessage
from tests.waits import wait_until
from tests.test_ui_wiring import _chat, _demo

T0 = 1_750_000_000.0
PRICE = Decimal("3.6")  # ¥0.001 a second


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def test_an_answer_alone_costs_what_the_ledger_bills_for_its_time(tmp_path):
    a = AnswerCost(T0, PRICE)
    a.sample(T0 + 10, 1)
    assert a.cost(T0 + 95.5) == Decimal("0.0955")
    with Ledger(tmp_path / "l.sqlite3") as led:
        sid = led.open_session("T4", PRICE, at=T0 - 300, billing=Billing.of("second"))
        row = led.close_session(sid, "user", at=T0 + 600)
    assert cents(a.cost(T0 + 95.5)) == cents(row.cost_between(T0, T0 + 95.5))


def test_overlapping_answers_split_the_time_and_add_up_to_the_ledger():
    """Two chats: A 0-60 s, B 30-90 s; the gauge shows 2 while both run."""
    a, b = AnswerCost(T0, PRICE), AnswerCost(T0 + 30, PRICE)
    for ans in (a, b):
        ans.sample(T0 + 30, 2)
    a_cost = a.cost(T0 + 60)
    b.sample(T0 + 60, 1)
    b_cost = b.cost(T0 + 90)
    assert a_cost == PRICE * Decimal(30 + 15) / 3600 and b_cost == PRICE * Decimal(15 + 30) / 3600
    assert a_cost + b_cost == PRICE * 90 / 3600  # the busy 90 s the ledger bills, to the cent and exactly


def test_unknown_readings_and_the_text():
    a = AnswerCost(T0, None)
    a.sample(T0 + 1, float("nan"))
    a.sample(T0 + 2, None)
    assert a.cost(T0 + 5) is None and cost_text(None, "CNY") == ""
    assert cost_text(Decimal("0.00125"), "CNY") == "≈¥0.0013 (estimate)"
    assert requests_now(SimpleNamespace(running=2, queued=1)) == 3
    assert requests_now(SimpleNamespace(available=False, running=2)) is None
    assert requests_now(None) is None


async def test_each_answer_in_the_console_shows_its_estimated_cost(monkeypatch, port):
    app, sup, _ = await _demo(monkeypatch, port, timeout="10m", warn="1m")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: sup.status.state is EngineState.READY, timeout=30)
        await wait_until(pilot, lambda: not app.chat.prompt.disabled and app.runtime.latest is not None)
        await _chat(pilot, app, "hello")

        def stats() -> str:
            return str(list(app.chat.query(AssistantMessage))[-1].query_one("#stats").content)

        await wait_until(pilot, lambda: "(estimate)" in stats())  # RequestEnded lands after the turn
        assert "tok" in stats() and "≈¥0.0" in stats()
        await app.runtime.close("user")


def test_batch_summary_per_1k_tokens_matches_the_ledger_row(tmp_path, capsys):
    """Per-minute billing at ¥36/h: the summary and the ledger row both bill the started minute."""
    import re

    from qwentui.cost.ledger import path_for
    from tests.test_batch_cli import config, prompts, run
    from tests.conftest import free_port

    from pathlib import Path

    cfg = config(tmp_path, free_port(), extra='granularity = "minute"\n')
    Path(cfg).write_text(Path(cfg).read_text().replace("price_per_hour = 1.8", "price_per_hour = 36"))
    code, out, _ = run(capsys, "--config", cfg, "batch", prompts(tmp_path, 6), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("cost:"))
    # "cost: ¥0.6 for 3.2s of box time at ¥36/h · ¥0.0123 per 1K generated tokens"
    cost = Decimal(re.search(r"cost: ¥([\d.]+) ", line).group(1))
    per_1k = Decimal(re.search(r"· ¥([\d.]+) per 1K", line).group(1))
    with Ledger(path_for("sim"), read_only=True) as ledger:
        (row,) = ledger.sessions()
        busy = ledger.activity()
        starts = ledger.engine_starts()
    assert cents(row.cost) == cents(cost) == Decimal("0.60")
    assert cents(row.cost * 1000 / row.tokens_out) == cents(per_1k)
    assert len(busy) == 1 and busy[0][1] >= busy[0][0] and len(starts) == 1  # the batch run is recorded
