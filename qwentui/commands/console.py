"""`qwentui` with no subcommand: start (or attach to) the engine and open the console."""

from __future__ import annotations

import argparse
import asyncio
import sys


def build(args: argparse.Namespace):
    """The app and its supervisor for these args (bad config/flags raise UsageError here)."""
    from qwentui import cli
    from qwentui.engine import Supervisor
    from qwentui.ui.app import make_app

    cfg = cli.load_config(args)
    keep = bool(getattr(args, "keep_engine", False))
    if getattr(args, "attach", None):
        supervisor = Supervisor.attach(args.attach, cfg.engine.api_key, cfg=cfg)
    else:
        supervisor = Supervisor(cfg, keep_engine=keep)
    return make_app(cfg, supervisor=supervisor, keep_engine=keep), supervisor


async def _run(app, supervisor) -> int | None:
    try:
        await app.run_async()
    finally:
        # However the app ended, an engine we own and did not hand over must not outlive us.
        if supervisor.status.running and not supervisor.attached:
            await supervisor.stop("user")
    return app.return_code


def run(args: argparse.Namespace) -> int:
    app, supervisor = build(args)
    code = asyncio.run(_run(app, supervisor))
    if app.kept_pid is not None:
        print(f"qwentui: engine left running (pid {app.kept_pid}) at {supervisor.base_url}; "
              f"stop it with: kill -TERM -- -{app.kept_pid}", file=sys.stderr)
    return int(code or 0)
