"""`qwentui stop`: stop the guard's engine and the guard; wait until both are gone and
the engine's port is free (exit 3 when no guard runs)."""

from __future__ import annotations

import argparse
import sys

STOP_WAIT_S = 120.0


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("stop", help="stop the engine and the guard; wait until they are gone")
    flags.add_engine_flags(p, subcommand=True, guard_only=True)
    p.set_defaults(func=run)


def client_for(args: argparse.Namespace):
    """The guard client for this state dir and engine kind (--demo / --engine / config)."""
    from qwentui.commands import flags
    from qwentui.runtime.client import GuardClient

    cfg = flags.load_config(args)
    return GuardClient(kind=cfg.engine.kind)


def run(args: argparse.Namespace) -> int:
    from qwentui.engine import procs
    from qwentui.errors import QwentuiError

    client = client_for(args)
    try:
        engine = client.state()["engine"]
    except QwentuiError as exc:
        if exc.exit_code == 3:
            raise
        engine = None  # another version: stop it all the same
    pid = client.stop_guard()["pid"]
    print(f"stopping the guard (pid {pid}) and its engine...", file=sys.stderr)
    if not client.wait_gone(pid, STOP_WAIT_S):
        raise QwentuiError(f"the guard (pid {pid}) is still running after {STOP_WAIT_S:g}s",
                           hint=f"kill -TERM {pid}; its engine dies with it")
    if engine and engine.get("url"):
        from urllib.parse import urlsplit

        url = urlsplit(engine["url"])
        host, port = url.hostname or "127.0.0.1", url.port or 80
        import asyncio

        if not asyncio.run(procs.wait_port_free(host, port, 10.0)):
            raise QwentuiError(f"the guard stopped but port {port} is still in use: {procs.port_owner(port) or '?'}")
    print("stopped", file=sys.stderr)
    return 0
