"""`qwentui cost plan ...` (weekly/yearly cost of a usage pattern) and `qwentui cost now`."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="plan GPU costs or show what this box costs now")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=type(p))
    plan = verbs.add_parser(
        "plan", help="weekly and yearly cost of hours per week on a GPU, and the saving",
        description="Weekly and yearly (52 weeks) cost of running H hours a week on a GPU, "
        "compared with --vs (default: the same GPU always on, 168 h a week). Example, the "
        "seed's case: qwentui cost plan --hours-per-week 8 --gpu T4 --vs-hours-per-week 168 --vs-gpu A10G")
    plan.add_argument("--hours-per-week", required=True, metavar="H", help="hours a week, 0-168")
    plan.add_argument("--gpu", required=True, metavar="NAME", help="GPU class or name (T4, L4, A10G, A100, ...)")
    plan.add_argument("--vs-hours-per-week", metavar="H2", help="hours a week to compare with (default 168)")
    plan.add_argument("--vs-gpu", metavar="NAME2", help="GPU to compare with (default: --gpu)")
    plan.add_argument("--price", metavar="P", help="price per hour of --gpu (default: [cost.prices])")
    plan.add_argument("--vs-price", metavar="P2", help="price per hour of --vs-gpu (default: [cost.prices])")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.set_defaults(func=run_plan)
    now = verbs.add_parser("now", help="this box's price, cost since boot, today and this month")
    now.add_argument("--format", choices=("table", "json"), default="table")
    now.add_argument("--ledger", metavar="PATH", help="ledger file (default: the state dir's)")
    now.set_defaults(func=run_now)


def run_plan(args: argparse.Namespace) -> int:
    from qwentui.commands import flags
    from qwentui.cost.plan import make_plan

    cfg = flags.load_config(args)
    plan = make_plan(cfg, args.hours_per_week, args.gpu, vs_hours=args.vs_hours_per_week,
                     vs_gpu=args.vs_gpu, price=args.price, vs_price=args.vs_price)
    if args.format == "json":
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(plan.lines()))
    return 0


def _detect_gpu() -> tuple[str | None, str]:
    from qwentui.telemetry.nvml import Nvml

    nvml = Nvml()
    try:
        snap = nvml.sample()
    finally:
        nvml.close()
    if snap.gpus:
        return snap.gpus[0].name, ""
    return None, snap.message or snap.status


def now_lines(snap, gpu_note: str) -> list[str]:
    """`cost now` as text; also used by tests with a fixed snapshot."""
    from qwentui.config import format_duration
    from qwentui.cost.prices import format_money, format_price

    cur = snap.currency
    gpu = f"{snap.gpu_model} ({snap.gpu_class})" if snap.gpu_model else f"none detected ({gpu_note})"
    price = (f"{format_price(snap.rate_per_hour, cur)}/h" if snap.price_known else
             "price unknown: set cost.price_per_hour or a [cost.prices] entry for this GPU class")
    up = format_duration(max(1.0, round(snap.box_seconds)))
    unknown = "" if snap.price_known else " + this session (price unknown)"
    return [f"GPU:        {gpu}", f"price:      {price}", f"billing:    {snap.basis}",
            f"since boot: {format_money(snap.box_since_boot_cost, cur)} ({up})",
            f"today:      {format_money(snap.today_cost, cur)}{unknown}",
            f"this month: {format_money(snap.month_cost, cur)}{unknown}",
            f"projected:  {format_money(snap.projected_month, cur)} this month at this pattern"]


def run_now(args: argparse.Namespace) -> int:
    from qwentui.commands import flags
    from qwentui.cost.ledger import Ledger, path_for
    from qwentui.cost.meter import Meter
    from qwentui.cost.plan import plain

    cfg = flags.load_config(args)
    name, note = _detect_gpu()
    with Ledger(args.ledger or path_for(cfg.engine.kind), read_only=True) as ledger:
        if ledger.degraded:
            print(f"qwentui: warning: {ledger.degraded}", file=sys.stderr)
        meter = Meter(cfg, ledger=ledger)
        meter.set_gpu(name)
        snap = meter.snapshot()
    if args.format == "json":
        keys = ("gpu_model", "gpu_class", "rate_per_hour", "currency", "basis", "box_seconds",
                "box_since_boot_cost", "today_cost", "month_cost", "projected_month")
        out = {k: getattr(snap, k) for k in keys}
        out = {k: plain(v, 4) if not isinstance(v, (str, float, type(None))) else v for k, v in out.items()}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print("\n".join(now_lines(snap, note)))
    return 0
