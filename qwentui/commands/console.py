"""`qwentui` with no subcommand: start (or attach to) the engine and open the console.

SIGTERM, SIGHUP (a dropped SSH session) and a SIGINT sent with kill end the app like a
quit: the engine is stopped (unless it was handed over with --keep-engine) and the
ledger row is closed with stop reason "signal". Ctrl+C typed in the app is a key
(stop generating), not a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def build(args: argparse.Namespace):
    """The app and its supervisor for these args (bad config/flags raise UsageError here)."""
    from qwentui.commands import flags
    from qwentui.engine import Supervisor
    from qwentui.runtime.core import Runtime
    from qwentui.ui.app import make_app

    cfg = flags.load_config(args)
    keep = bool(getattr(args, "keep_engine", False))
    if getattr(args, "attach", None):
        supervisor = Supervisor.attach(args.attach, cfg.engine.api_key, cfg=cfg)
    else:
        supervisor = Supervisor(cfg, keep_engine=keep)
    runtime = Runtime(cfg, supervisor)
    return make_app(cfg, supervisor=supervisor, keep_engine=keep, runtime=runtime), supervisor


def _on_signal(app) -> None:
    app.exit_reason = "signal"
    if app.runtime is not None:
        app.runtime.stop_requested("signal")  # before teardown cancels a start-up as "user"
    app.exit()


async def _run(app, supervisor) -> int | None:
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, _on_signal, app)
    try:
        await app.run_async()
    finally:
        try:
            # However the app ended, an engine we own and did not hand over must not outlive us.
            if app.runtime is not None:
                await app.runtime.close(app.exit_reason)
            if supervisor.status.running and not supervisor.attached:
                await supervisor.stop(app.exit_reason)
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
    return app.return_code


def run(args: argparse.Namespace) -> int:
    app, supervisor = build(args)
    code = asyncio.run(_run(app, supervisor))
    if app.kept_pid is not None:
        print(f"qwentui: engine left running (pid {app.kept_pid}) at {supervisor.base_url}; "
              f"stop it with: kill -TERM -- -{app.kept_pid}", file=sys.stderr)
    return int(code or 0)
