"""`qwentui` with no subcommand: attach the console to this state dir's guard (starting one
in the background when none runs), or to a server qwentui did not start (`--attach URL`).

The engine, idle watchdog and bill belong to the guard, so SIGTERM, SIGHUP (a dropped
SSH session), a closed terminal or kill -9 of the console end only the console: the
guard goes on and stops an idle engine on time. Only "Stop engine & quit" stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


async def open_guard(args: argparse.Namespace, cfg, *, log_from: int | None = None):
    """A GuardLink to this state dir's guard, starting one (or waiting for the one that
    `spawn` launched, whose log starts at `log_from`) when none answers."""
    from qwentui.runtime.client import AsyncGuardClient, GuardClient
    from qwentui.runtime.detach import guard_argv, spawn, wait_answering
    from qwentui.runtime.link import GuardLink
    from qwentui.runtime.place import place

    where = place(cfg.engine.kind)
    if log_from is not None:
        await asyncio.to_thread(wait_answering, where, log_from)
    elif not await asyncio.to_thread(GuardClient(where).alive):
        start = await asyncio.to_thread(spawn, guard_argv(args, cfg.engine.kind), where)
        await asyncio.to_thread(wait_answering, where, start)
    return await GuardLink.open(AsyncGuardClient(where))


async def build(args: argparse.Namespace):
    """The app for these args (bad config/flags raise UsageError here). A running guard is
    attached before the first paint; a new one is launched here and attached once it
    answers, so the console paints while the guard starts."""
    from qwentui.commands import flags
    from qwentui.ui.app import make_app

    cfg = flags.load_config(args)
    if getattr(args, "attach", None):
        from qwentui.engine import Supervisor
        from qwentui.runtime.core import Runtime

        supervisor = Supervisor.attach(args.attach, cfg.engine.api_key, cfg=cfg)
        return make_app(cfg, supervisor=supervisor, runtime=Runtime(cfg, supervisor))
    from qwentui.runtime.client import GuardClient
    from qwentui.runtime.detach import guard_argv, spawn
    from qwentui.runtime.place import place

    where = place(cfg.engine.kind)
    reconnect = lambda: open_guard(args, cfg)  # noqa: E731 - after the guard died
    if await asyncio.to_thread(GuardClient(where).alive):
        link = await open_guard(args, cfg)
        return make_app(cfg, supervisor=link.engine, runtime=link, reconnect=reconnect)
    log_from: list[int | None] = [await asyncio.to_thread(spawn, guard_argv(args, cfg.engine.kind), where)]

    async def connect():  # first: the guard just launched; later: after it died, a new one
        start, log_from[0] = log_from[0], None
        return await open_guard(args, cfg, log_from=start)

    return make_app(cfg, reconnect=connect)  # the header fills in when the guard answers


def _on_signal(app) -> None:
    from qwentui.ui.shutdown import arm_exit_deadline

    app.exit_reason = "signal"
    arm_exit_deadline(code=1)  # the terminal may be gone: teardown gets a few seconds, no more
    app.exit()


async def _run(args: argparse.Namespace):
    return await run_app(await build(args))


async def run_app(app):
    """Run a built console until it ends; signals end only the console (never the guard)."""
    from qwentui.ui.shutdown import EXIT_DEADLINE_S, arm_exit_deadline

    app.exit_deadline = EXIT_DEADLINE_S
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, _on_signal, app)
    try:
        await app.run_async()
    finally:
        arm_exit_deadline()  # a dead terminal must never hold the process
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        if app.runtime is not None:
            await asyncio.wait_for(app.runtime.close(app.exit_reason), 10.0)
    return app


def run(args: argparse.Namespace) -> int:
    from qwentui.ui.shutdown import exited_cleanly

    app = asyncio.run(_run(args))
    exited_cleanly()
    if app.farewell:
        print(f"qwentui: {app.farewell}", file=sys.stderr)
    return int(app.return_code or 0)
