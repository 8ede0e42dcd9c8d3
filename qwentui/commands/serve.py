"""`qwentui serve`: headless engine. Start it, print phases and a client snippet, run until
Ctrl+C / SIGTERM / SIGHUP, then stop it completely (unless --keep-engine or --attach).

`ServeSession` (qwentui/engine/session.py) is the main loop; features that act while
serving (idle watchdog, cost ledger) plug in through `session.on_tick` (called every `tick`
seconds while the engine is ready) and `session.on_exit` (called once after the engine
stopped), and stop the engine with `session.request_stop(reason)`.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui import cli

    p = sub.add_parser("serve", help="run the engine headless and print how to connect to it")
    p.add_argument("--preset", metavar="NAME", help="launch preset (default: engine.preset, 'auto')")
    p.add_argument("--stop-grace", metavar="DUR", help="wait this long after SIGTERM before SIGKILL "
                   "(default: engine.stop_grace, 15s)")
    p.add_argument("--startup-timeout", metavar="DUR", help="give up on start-up after this long "
                   "(default: engine.startup_timeout, 10m)")
    cli.add_engine_flags(p, subcommand=True)
    from qwentui.runtime import headless as idle_serve

    idle_serve.add_flags(p)
    p.set_defaults(func=run)


def __getattr__(name: str):
    if name == "ServeSession":  # imported lazily: asyncio is too slow for `qwentui --help`
        from qwentui.runtime.serve import ServeSession

        return ServeSession
    raise AttributeError(name)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from qwentui import cli, config
    from qwentui.runtime.serve import ServeSession

    cfg = cli.load_config(args)
    changes: dict[str, Any] = {}
    if args.stop_grace is not None:
        changes["stop_grace"] = config.parse_duration(args.stop_grace, "--stop-grace")
    if args.startup_timeout is not None:
        changes["startup_timeout"] = config.parse_duration(args.startup_timeout, "--startup-timeout")
    if changes:
        from qwentui.engine.argv import with_engine

        cfg = with_engine(cfg, **changes)
    _check_poweroff(cfg, args)
    session = ServeSession(cfg, preset=args.preset, keep_engine=getattr(args, "keep_engine", False),
                           attach=getattr(args, "attach", None))
    from qwentui.runtime import headless as idle_serve

    idle_serve.install(session, args)  # idle watchdog + cost ledger, via on_tick/on_exit
    code = asyncio.run(session.run())
    return code or session.exit_code


def _check_poweroff(cfg, args: argparse.Namespace) -> None:
    """An idle poweroff whose command cannot run fails before the engine starts."""
    from qwentui.idle.actions import check_poweroff
    from qwentui.runtime import headless as idle_serve

    idle = idle_serve.idle_settings(cfg, args)
    if idle.enabled and idle.action == "poweroff" and not getattr(args, "attach", None):
        note = check_poweroff(idle.poweroff_command)
        if note:
            print(note, flush=True)
