"""`qwentui report [--month YYYY-MM | --from DATE --to DATE] [--format table|csv|json]`."""

from __future__ import annotations

import argparse
import sys

from qwentui.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="cost report: sessions, totals per day/month/GPU, vs always-on",
                       description="Read the cost ledger (read-only) and print sessions, totals per "
                       "day, month and GPU, cost per 1K generated tokens, cache savings, and what "
                       "the same period would have cost always-on (24x7). Default: this month.")
    p.add_argument("--month", metavar="YYYY-MM", help="a calendar month (local time)")
    p.add_argument("--from", dest="date_from", metavar="DATE", help="first day YYYY-MM-DD (inclusive)")
    p.add_argument("--to", dest="date_to", metavar="DATE", help="last day YYYY-MM-DD (inclusive; default today)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table (default), csv (sessions and totals) or json (everything)")
    p.add_argument("--vs-gpu", metavar="NAME", default="A10G",
                   help="reference GPU for the always-on comparison (default A10G)")
    p.add_argument("--ledger", metavar="PATH", help="ledger file (default: the state dir's)")
    p.set_defaults(func=run)


def period(args: argparse.Namespace, now: float, tz=None) -> tuple[float, float, str]:
    """[start, end) and a title from --month / --from / --to (default: this month)."""
    from qwentui.cost import periods

    if args.month and (args.date_from or args.date_to):
        raise UsageError("use either --month or --from/--to, not both")
    if args.month:
        year, month = periods.parse_month(args.month)
        start, end = periods.month_bounds(year, month, tz)
        return start, end, f"{year:04d}-{month:02d}"
    if args.date_to and not args.date_from:
        raise UsageError("--to needs --from")
    if args.date_from:
        first = periods.parse_date(args.date_from, "--from")
        last = periods.parse_date(args.date_to, "--to") if args.date_to else periods.local(now, tz).date()
        if first > last:
            raise UsageError(f"--from {first} is after --to {last}")
        start, end = periods.dates_bounds(first, last, tz)
        return start, end, f"{first} to {last}"
    wall = periods.local(now, tz)
    start, end = periods.month_bounds(wall.year, wall.month, tz)
    return start, end, f"{wall.year:04d}-{wall.month:02d}"


def run(args: argparse.Namespace, *, clock=None, tz=None) -> int:
    import time

    from qwentui.commands import flags
    from qwentui.cost import report
    from qwentui.cost.ledger import Ledger, path_for
    from qwentui.cost.prices import resolve_gpu

    cfg = flags.load_config(args)
    now = (clock or time.time)()
    start, end, title = period(args, now, tz)
    reference = resolve_gpu(cfg, args.vs_gpu)[0] if args.vs_gpu else None
    with Ledger(args.ledger or path_for(cfg.engine.kind), read_only=True) as ledger:
        if ledger.degraded:
            print(f"qwentui: warning: {ledger.degraded}", file=sys.stderr)
        rows = ledger.sessions(start, end)
    for reason in ledger.skipped:
        print(f"qwentui: warning: skipped a ledger row that cannot be read: {reason}", file=sys.stderr)
    built = report.build(rows, start, end, cfg=cfg, title=title, now=now, tz=tz, reference=reference)
    render = {"table": report.render_table, "csv": report.render_csv, "json": report.render_json}
    sys.stdout.write(render[args.format](built))
    return 0
