"""`qwentui serve`: headless engine. Start it, print phases and a client snippet, run until
Ctrl+C / SIGTERM / SIGHUP, then stop it completely (unless --keep-engine or --attach).

`ServeSession` (qwentui/runtime/serve.py) is the main loop; features that act while
serving (idle watchdog, cost ledger) plug in through `session.on_tick` (called every `tick`
seconds while the engine is ready) and `session.on_exit` (called once after the engine
stopped), and stop the engine with `session.request_stop(reason)`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("serve", help="run the engine headless and print how to connect to it")
    p.add_argument("--preset", metavar="NAME", help="launch preset (default: engine.preset, 'auto')")
    flags.add_engine_flags(p, subcommand=True)
    flags.add_serve_flags(p)  # --stop-grace, --startup-timeout, --idle-*: config keys, validated with it
    p.set_defaults(func=run)


def __getattr__(name: str):
    if name == "ServeSession":  # imported lazily: asyncio is too slow for `qwentui --help`
        from qwentui.runtime.serve import ServeSession

        return ServeSession
    raise AttributeError(name)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from qwentui.commands import flags
    from qwentui.runtime import headless
    from qwentui.runtime.serve import ServeSession

    cfg = flags.load_config(args)
    _check_poweroff(cfg, args)
    session = ServeSession(cfg, preset=args.preset, keep_engine=getattr(args, "keep_engine", False),
                           attach=getattr(args, "attach", None))
    headless.install(session)  # idle watchdog + cost ledger, via on_tick/on_exit
    code = asyncio.run(session.run())
    return code or session.exit_code


def _check_poweroff(cfg, args: argparse.Namespace) -> None:
    """An idle poweroff whose command cannot run fails before the engine starts."""
    from qwentui.idle.actions import check_poweroff

    idle = cfg.idle  # the --idle-* flags are in it already
    if idle.enabled and idle.action == "poweroff" and not getattr(args, "attach", None):
        note = check_poweroff(idle.poweroff_command)
        if note:
            print(note, flush=True)
