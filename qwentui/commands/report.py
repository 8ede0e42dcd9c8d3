"""`qwentui report [--month YYYY-MM | --from DATE --to DATE] [--format table|csv|json]`,
and `--what-if`: the idle-timeout replay over recorded activity or a `--trace` file."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from qwentui.errors import UsageError

if TYPE_CHECKING:
    from decimal import Decimal


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
    p.add_argument("--no-chart", action="store_true",
                   help="no chart after the table (charts are only drawn on a terminal)")
    w = p.add_argument_group("what-if", WHATIF_HELP)
    w.add_argument("--what-if", action="store_true", help="replay the period's recorded activity for each timeout")
    w.add_argument("--timeouts", metavar="LIST", help="timeouts to replay (default 5m,15m,30m,1h,never)")
    w.add_argument("--trace", metavar="FILE.jsonl",
                   help='replay this trace instead: one {"start": ISO-8601, "end": ISO-8601} a line')
    w.add_argument("--cold-start", metavar="DURATION", help="cold start (default: median measured one)")
    w.add_argument("--price", metavar="PER_HOUR", help="price per hour (default: the period's GPU price)")
    w.add_argument("--gpu", metavar="NAME", help="price of this GPU class from [cost.prices]")
    w.add_argument("--granularity", choices=("second", "minute", "hour"),
                   help="billing unit (default cost.granularity)")
    w.add_argument("--minimum", metavar="DURATION", help="least billed per period (default cost.minimum)")
    w.add_argument("--max-cold-starts-per-day", type=float, metavar="N",
                   help="also mark the cheapest timeout with at most N cold starts a day")
    w.add_argument("--worker", metavar="URL",
                   help="replay this fleet worker's recorded activity at its price (its ledger session "
                   "or fleet.prices); default: this box's own")
    w.add_argument("--skip-bad", action="store_true", help="skip bad trace lines instead of stopping")
    p.set_defaults(func=run)


WHATIF_HELP = (
    "What each idle timeout would have cost. The box is up in periods: a period starts with a "
    "cold start (billed; requests arriving during it wait), covers the busy intervals whose gaps "
    "are all <= the timeout, and ends one timeout after its last busy interval; each period is "
    "billed rounded up to the granularity, with the minimum. The hindsight optimum (oracle) keeps "
    "the box up through a gap exactly when the gap is shorter than the cold start, and stops right "
    "after the last busy interval.")
WHATIF_ONLY = ("timeouts", "cold_start", "price", "gpu", "granularity", "minimum",
               "max_cold_starts_per_day", "skip_bad", "worker")


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
    if args.what_if or args.trace:
        return run_what_if(args, cfg, now, tz)
    given = [f"--{n.replace('_', '-')}" for n in WHATIF_ONLY if getattr(args, n) not in (None, False)]
    if given:
        raise UsageError(f"{given[0]} needs --what-if (or --trace)")
    start, end, title = period(args, now, tz)
    reference = resolve_gpu(cfg, args.vs_gpu)[0] if args.vs_gpu else None
    with Ledger(args.ledger or path_for(cfg.engine.kind), read_only=True) as ledger:
        if ledger.degraded:
            print(f"qwentui: warning: {ledger.degraded}", file=sys.stderr)
        rows = ledger.sessions(start, end)
        busy, starts = ledger.activity(start, end), ledger.engine_starts(start, end)
    for reason in ledger.skipped:
        print(f"qwentui: warning: skipped a ledger row that cannot be read: {reason}", file=sys.stderr)
    built = report.build(rows, start, end, cfg=cfg, title=title, now=now, tz=tz, reference=reference)
    render = {"table": report.render_table, "csv": report.render_csv, "json": report.render_json}
    sys.stdout.write(render[args.format](built))
    if _charts_wanted(args) and built.sessions:
        from qwentui.cost import charts

        built = charts.with_activity(built, busy, starts, cfg, now=now)
        sys.stdout.write(charts.terminal_chart(charts.draw_days, built.daily, currency=built.currency,
                                               budget_month=built.budget_month, recorded=built.recorded,
                                               **_chart_size()) + "\n")
    return 0


def _price(args: argparse.Namespace, cfg, rows, worker: str | None = None) -> "Decimal | None":
    from qwentui.cost.fleetbook import worker_prices
    from qwentui.cost.prices import parse_money, price_per_hour, resolve_gpu

    if args.price is not None and args.gpu:
        raise UsageError("use either --price or --gpu, not both")
    if args.price is not None:
        return parse_money(args.price, "--price")
    if args.gpu:
        return resolve_gpu(cfg, args.gpu)[1]
    prices = [r.price_per_hour for r in rows if r.price_per_hour is not None]
    if prices:
        return prices[-1]
    if worker:
        return worker_prices(cfg.fleet.prices, [worker])[worker]  # None: replayed without a cost
    return price_per_hour(cfg, None)


def _billing(args: argparse.Namespace, cfg):
    from qwentui.cost.billing import Billing
    from qwentui.cost.whatif import parse_duration_flag

    minimum = cfg.cost.minimum if args.minimum is None else parse_duration_flag(args.minimum, "--minimum")
    return Billing.of(args.granularity or cfg.cost.granularity, minimum)


def what_if_inputs(args: argparse.Namespace, cfg, now: float, tz=None):
    """(busy spans, window, measured cold starts, session rows, title, worker URL or None) for the replay:
    this box's own record, or with --worker that fleet worker's (its sessions, its activity)."""
    from qwentui.cost import periods
    from qwentui.cost.ledger import Ledger, path_for
    from qwentui.cost.whatif import read_trace

    with Ledger(args.ledger or path_for(cfg.engine.kind), read_only=True) as ledger:
        if ledger.degraded:
            print(f"qwentui: warning: {ledger.degraded}", file=sys.stderr)
        measured = ledger.cold_starts()
        if args.trace:
            spans, skipped = read_trace(args.trace, skip_bad=args.skip_bad)
            for problem in skipped:
                print(f"qwentui: warning: skipped {problem}", file=sys.stderr)
            # "never" stays up to the end of the trace's last (local) day
            last = max(b for _, b in spans) / 1000
            end_ms = int(round(periods.day_start(last + 86400 - 1e-3, tz) * 1000))
            window = (min(a for a, _ in spans), max(end_ms, max(b for _, b in spans)))
            local = [r for r in ledger.sessions() if r.worker is None]
            return spans, window, measured, local, f"trace {args.trace}", None
        start, end, title = period(args, now, tz)
        worker = known_worker(ledger, cfg, args.worker) if args.worker else None
        rows = [r for r in ledger.sessions(start, end) if r.worker == worker]
        lo, hi = int(round(start * 1000)), int(round(min(end, max(now, start)) * 1000))
        spans = [(max(lo, int(round(a * 1000))), min(hi, int(round(b * 1000))))
                 for a, b in ledger.activity(start, end, worker=worker)]
        if worker:
            measured, title = [], f"{title}, worker {worker}"  # the fleet never starts its workers
        else:
            measured = ledger.cold_starts(start, end) or measured
            _mention_workers(ledger.active_workers(start, end))
    return [s for s in spans if s[0] <= s[1]], (lo, hi), measured, rows, title, worker


def known_worker(ledger, cfg, raw: str) -> str:
    """--worker URL as the ledger spells it; one the ledger and fleet.workers never saw → UsageError."""
    from qwentui.engine.attach import normalize_url

    try:
        url = normalize_url(raw)
    except UsageError:
        raise UsageError(f"--worker {raw!r} is not an http(s) URL like http://box-a:30000") from None
    known = {r.worker for r in ledger.sessions() if r.worker is not None} | set(ledger.active_workers())
    known |= {normalize_url(str(w)) for w in cfg.fleet.workers}
    if url in known:
        return url
    listed = ", ".join(sorted(known)) or "none (run `qwentui fleet` first)"
    raise UsageError(f"--worker {url}: no such fleet worker in the ledger or fleet.workers; known: {listed}")


def _mention_workers(workers: list[str]) -> None:
    if workers:
        print(f"qwentui: this replays this box only; fleet workers with activity in the period: "
              f"{', '.join(workers)} (--worker URL replays one)", file=sys.stderr)


def run_what_if(args: argparse.Namespace, cfg, now: float, tz=None) -> int:
    from qwentui.cost import whatif

    timeouts = whatif.parse_timeouts(args.timeouts or whatif.DEFAULT_TIMEOUTS)
    cold = whatif.parse_duration_flag(args.cold_start, "--cold-start") if args.cold_start else None
    billing = _billing(args, cfg)
    if args.max_cold_starts_per_day is not None and not args.max_cold_starts_per_day >= 0:
        raise UsageError(f"--max-cold-starts-per-day must be 0 or more, got {args.max_cold_starts_per_day:g}")
    if args.worker and args.trace:
        raise UsageError("use either --trace or --worker, not both")
    spans, window, measured, rows, title, worker = what_if_inputs(args, cfg, now, tz)
    if not spans:
        print(f"qwentui what-if: {title}: no recorded activity for this period (the ledger records "
              "busy intervals from this version on; --trace FILE replays another record)")
        return 0
    if cold is None:
        cold = whatif.median(measured)
        if cold is None and worker:
            raise UsageError("no measured cold start for a fleet worker (the fleet does not start its "
                             "workers): pass --cold-start DURATION")
        if cold is None:
            raise UsageError("no measured cold start in the ledger yet: pass --cold-start DURATION")
    price = _price(args, cfg, rows, worker)
    current = None if not cfg.idle.enabled else int(round(cfg.idle.timeout * 1000))
    result = whatif.run(spans, timeouts, cold_start_ms=int(round(cold * 1000)), billing=billing,
                        price=price, window=window, current_ms=current, current_known=worker is None,
                        max_cold_starts_per_day=args.max_cold_starts_per_day)  # idle.timeout is this box's
    currency = rows[-1].currency if rows else cfg.cost.currency
    if args.format == "json":
        sys.stdout.write(whatif.render_json(result))
    elif args.format == "csv":
        sys.stdout.write(whatif.render_csv(result))
    else:
        sys.stdout.write(whatif.render_table(result, title=title, currency=currency))
        if _charts_wanted(args):
            from qwentui.cost import charts

            sys.stdout.write(charts.terminal_chart(charts.draw_what_if, result, currency=currency,
                                                   **_chart_size()) + "\n")
    return 0


def _charts_wanted(args: argparse.Namespace) -> bool:
    """Pictures only for people: the table format on a terminal (csv/json and pipes stay plain)."""
    return args.format == "table" and not args.no_chart and sys.stdout.isatty()


def _chart_size() -> dict[str, int]:
    import shutil

    cols = shutil.get_terminal_size((100, 24)).columns
    return {"width": max(40, min(cols, 140)), "height": 18}
