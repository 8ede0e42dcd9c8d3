"""`qwentui fleet --worker URL …`: several engines behind SGLang's model gateway `smg`.

Starts `smg` as a supervised child in front of the workers (or `fleet.workers`), prints the
gateway's URL once every worker is registered, and runs until Ctrl+C / SIGTERM / SIGHUP,
then stops the gateway (never the workers: they are other boxes' engines).
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  qwentui fleet --worker http://box-a:30000 --worker http://box-b:30000
  qwentui --attach http://127.0.0.1:30080                       # chat through the fleet
  qwentui batch prompts.jsonl -o out.jsonl --attach http://127.0.0.1:30080
needs:  pip install 'qwentui[fleet]'   (SGLang's model gateway, the `smg` binary)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="put several engines behind SGLang's model gateway (smg)",
                       description="Start SGLang's model gateway `smg` in front of several engines and\n"
                       "serve one OpenAI-compatible endpoint until Ctrl+C.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="append", metavar="URL", default=None,
                   help="an engine's base URL (repeatable; default: fleet.workers)")
    from qwentui.commands import flags

    flags.add_fleet_flags(p)  # --port, --metrics-port, --policy: fleet.* keys, validated with the config
    p.add_argument("--console", action="store_true",
                   help="open the console on the gateway, with the fleet view in place of the GPU pane")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from qwentui.commands import flags
    from qwentui.engine import gateway

    cfg = flags.load_config(args)
    fleet = cfg.fleet
    smg = gateway.require_smg()
    workers = gateway.normalize_workers(args.worker or fleet.workers)
    console = _console_builder(args) if args.console else None
    return asyncio.run(serve(fleet, workers, smg, console=console, cfg=cfg))


def _console_builder(args: argparse.Namespace):
    """A coroutine function gateway → app: the console attached to the gateway with a fleet pane."""
    async def build(gw):
        from qwentui.commands import console
        from qwentui.telemetry.fleet import FleetSampler
        from qwentui.ui.widgets.fleet import FleetPane

        ns = argparse.Namespace(**{**vars(args), "attach": gw.base_url})
        app = await console.build(ns)
        sampler = FleetSampler(gw.base_url, gw.metrics_url, gw.workers, api_key=gw.fleet.api_key,
                               costs=cost_labels(gw.fleet, gw.workers, app.cfg.cost.currency))
        app.fleet_pane = FleetPane(sampler, id="fleet")
        return app

    return build


def cost_labels(fleet, workers: list[str], currency: str) -> dict[str, str]:
    from qwentui.cost.fleetbook import worker_prices
    from qwentui.cost.prices import symbol
    from qwentui.telemetry.fleet import cost_label

    prices = worker_prices(fleet.prices, workers)
    return {url: cost_label(None if p is None else float(p), symbol(currency)) for url, p in prices.items()}


async def serve(fleet, workers: list[str], smg: str, console=None, cfg=None) -> int:
    import asyncio
    import signal
    import sys

    from qwentui.engine import gateway

    def say(text: str) -> None:
        print(f"qwentui: {text}", file=sys.stderr, flush=True)

    model = gateway.check_one_model(await gateway.worker_models(workers, fleet.api_key))
    gw = gateway.Gateway(fleet, workers, smg=smg)
    gw.check()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    books = None
    say(f"starting smg for {len(workers)} workers ({model or 'model unknown'}); log: {gw.log_path}")
    try:
        if not await _first(gw.start(), stop.wait()):
            say("interrupted during start-up")
            return 130
        books = await Books.open(cfg, gw, say)  # before the URL is out: counts start at zero
        if console is None:
            print(gw.base_url, flush=True)  # stdout: the one thing a script needs
        say(f"fleet ready at {gw.base_url} ({len(workers)} workers, policy {fleet.policy}); "
            f"metrics {gw.metrics_url}")
        say(f"chat: qwentui --attach {gw.base_url}    batch: qwentui batch IN -o OUT --attach {gw.base_url}")
        if console is not None:
            return await _run_console(console, gw, loop)
        exited = asyncio.create_task(_until_exit(gw))
        await _first(exited, stop.wait())
        if gw.status.state == "crashed":
            say(f"error: {gw.status.error}")
            return 1
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if books is not None:
            await books.close("crash" if gw.status.state == "crashed" else "signal" if stop.is_set() else "user")
        await gw.stop()
        say("gateway stopped" + (f"; {gw.status.error}" if gw.status.error and gw.status.state != "crashed" else ""))


class Books:
    """The ledger's side of the fleet: one session per worker, heartbeated every cost.heartbeat,
    and each worker's busy intervals from a scrape every TICK_S (the what-if replays them)."""

    TICK_S = 2.0

    def __init__(self, book, sampler, interval: float, say) -> None:
        import asyncio

        from qwentui.cost.activity import WorkerActivity

        self.book, self.sampler, self.say = book, sampler, say
        self.tick = min(self.TICK_S, interval)
        self.activity = WorkerActivity(lambda: book.ledger, list(book.sessions), tick=self.tick)
        self._task = asyncio.create_task(self._beat(interval))

    @classmethod
    async def open(cls, cfg, gw, say):
        from qwentui.config import Config
        from qwentui.cost.billing import Billing
        from qwentui.cost.fleetbook import FleetBook, worker_prices
        from qwentui.cost.ledger import Ledger, path_for
        from qwentui.engine.gateway import all_simulated
        from qwentui.errors import QwentuiError
        from qwentui.telemetry.fleet import FleetSampler

        cfg = cfg or Config()
        kind = "sim" if await all_simulated(gw.workers, gw.fleet.api_key) else "sglang"
        prices = worker_prices(gw.fleet.prices, gw.workers)
        try:
            ledger = Ledger(path_for(kind))
            book = FleetBook(ledger, gw.workers, prices, currency=cfg.cost.currency, kind=kind,
                             billing=Billing.from_config(cfg))
        except QwentuiError as exc:
            say(f"warning: ledger unavailable, the fleet's cost is not recorded: {exc.message}")
            return None
        sampler = FleetSampler(gw.base_url, gw.metrics_url, gw.workers, api_key=gw.fleet.api_key)
        books = cls(book, sampler, cfg.cost.heartbeat, say)
        await books._tick(record=True)  # each worker's counters now are the sessions' zero
        return books

    async def _beat(self, interval: float) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(self.tick)
            record = loop.time() >= due
            if record:
                due += interval
            await self._tick(record)

    async def _tick(self, record: bool) -> None:
        from qwentui.errors import QwentuiError

        snapshot = await self.sampler.sample()
        self.activity.observe(snapshot)  # never raises: a failed write is counted and logged
        if not record:
            return
        try:
            self.book.record(snapshot)
        except QwentuiError as exc:
            self.say(f"warning: ledger heartbeat failed: {exc.message}")

    async def close(self, reason: str) -> None:
        self._task.cancel()
        await self._tick(record=True)  # the last counts before the sessions close
        self.activity.flush()
        await self.sampler.aclose()
        try:
            self.book.close(reason)
        finally:
            self.book.ledger.close()


async def _run_console(build, gw, loop) -> int:
    import signal

    from qwentui.commands.console import run_app  # the console's own run loop and cleanup

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.remove_signal_handler(sig)  # the console installs its own (quit = stop the gateway too)
    app = await run_app(await build(gw))
    return int(app.return_code or 0)


async def _until_exit(gw) -> None:
    import asyncio

    while gw.status.state == "ready":
        await asyncio.sleep(0.2)


async def _first(main, other) -> bool:
    """Run `main` until done (True, its exception raised) or until `other` finishes first (False)."""
    import asyncio

    main_task, other_task = asyncio.ensure_future(main), asyncio.ensure_future(other)
    try:
        await asyncio.wait([main_task, other_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        other_task.cancel()
    if main_task.done():
        main_task.result()
        return True
    main_task.cancel()
    try:
        await main_task
    except asyncio.CancelledError:
        pass
    return False
