"""Prices, money formatting and `qwentui cost plan` (the seed's before/after numbers, literally)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest

from qwentui import cli
from qwentui.config import Config
from qwentui.cost import prices
from qwentui.cost.plan import make_plan

SEED_ARGS = ["cost", "plan", "--hours-per-week", "8", "--gpu", "T4", "--vs-hours-per-week", "168",
             "--vs-gpu", "A10G"]
SEED_OUTPUT = """\
scenario  hours/week  GPU   price/h  weekly   yearly
before         168 h  A10G     ¥3.0    ¥504  ¥26,208
after            8 h  T4       ¥1.8   ¥14.4   ¥748.8

saving 97.1%: ¥26,208 → ¥748.8 a year (¥25,459.2 less, 52 weeks a year)
"""


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def cost_cfg(**cost) -> Config:
    return dataclasses.replace(Config(), cost=dataclasses.replace(Config().cost, **cost))


def test_default_prices_and_override():
    cfg = Config()
    assert [prices.price_per_hour(cfg, c) for c in ("T4", "L4", "A10G", "A100")] == [
        Decimal("1.8"), Decimal("2.5"), Decimal("3.0"), Decimal("12.0")]
    assert prices.price_per_hour(cfg, "a10g") == Decimal("3.0")
    assert prices.price_per_hour(cfg, "H100") is None and prices.price_per_hour(cfg, None) is None
    assert prices.price_per_hour(cost_cfg(price_per_hour=0.0), "T4") == Decimal("1.8")  # 0 = look up
    assert prices.price_per_hour(cost_cfg(price_per_hour=7.25), "T4") == Decimal("7.25")
    assert prices.price_per_hour(cost_cfg(price_per_hour=7.25), None) == Decimal("7.25")
    assert prices.price_per_hour(cost_cfg(prices={"H100": 20.5}), "H100") == Decimal("20.5")


def test_gpu_names_resolve_through_telemetry_classes():
    cfg = Config()
    assert prices.classify("Tesla T4") == "T4"
    assert prices.resolve_gpu(cfg, "NVIDIA A10G") == ("A10G", Decimal("3.0"))
    assert prices.resolve_gpu(cfg, "t4") == ("T4", Decimal("1.8"))
    assert prices.resolve_gpu(cfg, "NVIDIA A100-SXM4-40GB") == ("A100", Decimal("12.0"))
    with pytest.raises(Exception, match="known GPUs are A100, A10G, L4, T4"):
        prices.resolve_gpu(cfg, "H100")


@pytest.mark.parametrize("amount, text", [
    ("26208", "¥26,208"), ("748.80", "¥748.8"), ("14.4", "¥14.4"), ("504.0", "¥504"),
    ("1.35", "¥1.35"), ("1.345", "¥1.35"), ("0.004", "¥0"), ("-2.5", "-¥2.5"), ("1234567.891", "¥1,234,567.89"),
])
def test_format_money(amount, text):
    assert prices.format_money(Decimal(amount)) == text


def test_money_format_variants():
    assert prices.format_money(Decimal("0.4"), trim=False) == "¥0.40"
    assert prices.format_money(Decimal("0.0213"), places=4) == "¥0.0213"
    assert prices.format_money(None) == "?"
    assert prices.format_money(Decimal("3"), "USD") == "$3"
    assert prices.format_money(Decimal("3"), "CHF") == "CHF 3"
    assert [prices.format_price(Decimal(p)) for p in ("3.0", "1.8", "12", "2.75")] == ["¥3.0", "¥1.8", "¥12.0", "¥2.75"]
    assert prices.to_decimal(1.8) == Decimal("1.8") and prices.to_decimal(0.1 + 0.2) != Decimal("0.3")


def test_the_seeds_numbers_exactly():
    plan = make_plan(Config(), "8", "T4", vs_hours="168", vs_gpu="A10G")
    b, a = plan.before, plan.after
    assert (b.weekly, b.yearly) == (Decimal("504"), Decimal("26208"))
    assert (a.weekly, a.yearly) == (Decimal("14.4"), Decimal("748.8"))
    assert plan.to_dict()["saving_pct"] == "97.1"
    assert plan.to_dict()["saving_yearly"] == "25459.2"


def test_cost_plan_prints_the_seeds_table(capsys):
    assert cli.main(SEED_ARGS) == 0
    assert capsys.readouterr().out == SEED_OUTPUT


def test_cost_plan_json(capsys):
    assert cli.main([*SEED_ARGS, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["before"] == {"label": "before", "hours_per_week": "168", "gpu": "A10G", "price_per_hour": "3",
                              "weekly": "504", "yearly": "26208"}
    assert data["after"] == {"label": "after", "hours_per_week": "8", "gpu": "T4", "price_per_hour": "1.8",
                             "weekly": "14.4", "yearly": "748.8"}
    assert (data["saving_pct"], data["saving_yearly"], data["weeks_per_year"], data["currency"]) == (
        "97.1", "25459.2", 52, "CNY")


def test_default_comparison_is_always_on_with_the_same_gpu(capsys):
    assert cli.main(["cost", "plan", "--hours-per-week", "40", "--gpu", "L4"]) == 0
    out = capsys.readouterr().out
    assert rows(out)[1:3] == [["before", "168", "h", "L4", "¥2.5", "¥420", "¥21,840"],
                              ["after", "40", "h", "L4", "¥2.5", "¥100", "¥5,200"]]
    assert "saving 76.2%" in out


def test_explicit_prices_allow_unknown_gpus_and_costs_more(capsys):
    assert cli.main(["cost", "plan", "--hours-per-week", "168", "--gpu", "H100", "--price", "25",
                     "--vs-hours-per-week", "168", "--vs-gpu", "T4"]) == 0
    out = capsys.readouterr().out
    assert rows(out)[2] == ["after", "168", "h", "H100", "¥25.0", "¥4,200", "¥218,400"]
    assert "costs 1288.9% more: ¥15,724.8 → ¥218,400 a year (¥202,675.2 more" in out


def test_price_from_config_table(tmp_path, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text("[cost]\ncurrency = \"USD\"\n[cost.prices]\nH100 = 2.49\n")
    assert cli.main(["--config", str(conf), "cost", "plan", "--hours-per-week", "10", "--gpu", "H100"]) == 0
    out = capsys.readouterr().out
    assert rows(out)[2] == ["after", "10", "h", "H100", "$2.49", "$24.9", "$1,294.8"]


def test_zero_hours_is_free():
    plan = make_plan(Config(), "0", "T4")
    assert plan.after.yearly == 0 and plan.to_dict()["saving_pct"] == "100"


@pytest.mark.parametrize("argv, message", [
    (["--hours-per-week", "8", "--gpu", "H100"],
     "unknown GPU 'H100': known GPUs are A100, A10G, L4, T4"),
    (["--hours-per-week", "8", "--gpu", "T4", "--vs-gpu", "TPUv5"], "unknown GPU 'TPUv5'"),
    (["--hours-per-week", "-1", "--gpu", "T4"], "--hours-per-week must not be negative, got -1"),
    (["--hours-per-week", "169", "--gpu", "T4"], "--hours-per-week must be at most 168 (the hours in a week), got 169"),
    (["--hours-per-week", "8", "--gpu", "T4", "--vs-hours-per-week", "200"], "--vs-hours-per-week must be at most 168"),
    (["--hours-per-week", "8", "--gpu", "T4", "--vs-hours-per-week", "-3"], "--vs-hours-per-week must not be negative"),
    (["--hours-per-week", "lots", "--gpu", "T4"], "--hours-per-week must be a number of hours, got 'lots'"),
    (["--hours-per-week", "nan", "--gpu", "T4"], "--hours-per-week must be a number of hours"),
    (["--hours-per-week", "8", "--gpu", "X", "--price", "-2"], "--price must be a price greater than zero"),
])
def test_bad_input(argv, message, capsys):
    assert cli.main(["cost", "plan", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qwentui: error: ") and message in lines[0], captured.err
    assert captured.out == ""


def test_cost_now_with_a_known_gpu(monkeypatch, tmp_path, capsys):
    import time as _time

    from qwentui.commands import cost as cost_cmd
    from qwentui.cost import periods
    from qwentui.cost.ledger import Ledger

    now = _time.time()
    with Ledger() as led:  # the state dir's ledger
        sid = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=now - 7200)
        led.close_session(sid, "user", at=now - 3600)
        month = led.total_between(periods.month_start(now), now)
    monkeypatch.setattr(cost_cmd, "_detect_gpu", lambda: ("Tesla T4", ""))
    conf = tmp_path / "c.toml"
    conf.write_text('[cost]\nbilling = "engine"\n')
    assert cli.main(["--config", str(conf), "cost", "now", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["gpu_class"], data["rate_per_hour"], data["basis"], data["currency"]) == ("T4", "1.8", "engine", "CNY")
    assert Decimal(data["box_since_boot_cost"]) > 0
    assert Decimal(data["month_cost"]).quantize(Decimal("0.0001")) == month.quantize(Decimal("0.0001"))
    assert cli.main(["cost", "now"]) == 0
    out = capsys.readouterr().out
    assert "GPU:        Tesla T4 (T4)" in out and "price:      ¥1.8/h" in out and "billing:    instance" in out


def test_cost_now_without_a_gpu_says_price_unknown(monkeypatch, capsys):
    from qwentui.commands import cost as cost_cmd

    monkeypatch.setattr(cost_cmd, "_detect_gpu", lambda: (None, "no NVIDIA driver"))
    assert cli.main(["cost", "now"]) == 0  # a state, not a crash
    out = capsys.readouterr().out
    assert "price unknown: set cost.price_per_hour" in out
    assert "GPU:        none detected (no NVIDIA driver)" in out
    assert "today:      ¥0 + this session (price unknown)" in out
