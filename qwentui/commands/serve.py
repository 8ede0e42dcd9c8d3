"""`qwentui serve`: the guard — the engine, idle watchdog and bill, headless.

In the foreground it prints phases, a client snippet and idle lines and runs until
Ctrl+C / SIGTERM / SIGHUP or the engine stops; `--detach` starts it in the background
(it then outlives the shell and serves consoles until `qwentui stop`). `--attach URL`
serves someone else's server: printed, never stopped, no guard.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("serve", help="run the guard: engine, idle watchdog and cost ledger, headless")
    p.add_argument("--preset", metavar="NAME", help="launch preset (default: engine.preset, 'auto')")
    p.add_argument("--detach", action="store_true", help="run the guard in the background; print its pid, "
                   "socket and log, exit once it answers")
    p.add_argument("--print-systemd-unit", nargs="?", const="user", choices=("user", "system"), metavar="KIND",
                   help="print a systemd unit (user, the default, or system) that runs this guard, and exit")
    p.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
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

    cfg = flags.load_config(args)  # bad flags fail here, before anything starts
    if args.print_systemd_unit:
        print(systemd_unit(args, cfg.engine.kind, args.print_systemd_unit), end="")
        return 0
    if getattr(args, "attach", None):
        return _serve_attached(cfg, args)
    _check_poweroff(cfg, args)  # a poweroff command that cannot run fails before anything starts
    if args.detach:
        return _detach(args, cfg)
    from qwentui.runtime.guard import Guard

    guard = Guard(cfg, preset=args.preset, stay=args.detached_child,
                  start=cfg.engine.autostart or not args.detached_child)
    return asyncio.run(guard.run())


def _serve_attached(cfg, args) -> int:
    import asyncio

    from qwentui.runtime import headless
    from qwentui.runtime.serve import ServeSession

    session = ServeSession(cfg, preset=args.preset, attach=args.attach)
    headless.install(session)
    code = asyncio.run(session.run())
    return code or session.exit_code


def _detach(args, cfg) -> int:
    from qwentui.runtime.detach import guard_argv, start_detached
    from qwentui.runtime.place import GuardLock, place

    where = place(cfg.engine.kind)
    GuardLock(where).acquire_check()  # a running guard: one line naming it, exit 1
    state = start_detached(guard_argv(args, cfg.engine.kind), where)
    print(f"guard started: pid {state['guard']['pid']}")
    print(f"  socket : {where.socket}")
    print(f"  log    : {where.log}")
    print(f"  engine log: {state['guard'].get('engine_log') or '-'}")
    print("  'qwentui' attaches to it; 'qwentui status' shows it; 'qwentui stop' ends it.")
    return 0


def systemd_unit(args, kind: str, scope: str) -> str:
    """A unit that runs the guard in the foreground: systemd restarts it after a crash, and
    stopping the unit SIGTERMs the guard only, which stops its engine within stop_grace."""
    import os
    import shlex

    from qwentui.runtime.detach import serve_argv

    argv = serve_argv(args, kind)
    install = "default.target" if scope == "user" else "multi-user.target"
    where = "~/.config/systemd/user/qwentui.service" if scope == "user" else "/etc/systemd/system/qwentui.service"
    enable = "systemctl --user enable --now qwentui" if scope == "user" else "systemctl enable --now qwentui"
    user = "" if scope == "user" else f"User={os.environ.get('USER') or os.getuid()}\n"
    return (f"# qwentui guard ({scope} unit). Save as {where}, then: {enable}\n"
            "[Unit]\nDescription=qwentui guard: SGLang engine, idle watchdog and cost ledger\n"
            "After=network-online.target\n\n"
            f"[Service]\nType=simple\n{user}ExecStart={shlex.join(argv)}\n"
            "Restart=on-failure\nRestartSec=5\n"
            "# SIGTERM goes to the guard only; it stops its engine (SIGTERM, grace, SIGKILL) itself.\n"
            "KillMode=mixed\nKillSignal=SIGTERM\nTimeoutStopSec=90\n\n"
            f"[Install]\nWantedBy={install}\n")


def _check_poweroff(cfg, args: argparse.Namespace) -> None:
    """An idle poweroff whose command cannot run fails before the engine starts."""
    from qwentui.idle.actions import check_poweroff

    idle = cfg.idle  # the --idle-* flags are in it already
    if idle.enabled and idle.action == "poweroff" and not getattr(args, "attach", None):
        note = check_poweroff(idle.poweroff_command)
        if note:
            print(note, flush=True)
