"""`qwentui status [--json]`: the running guard's snapshot (exit 3 when no guard runs)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("status", help="what the guard sees: engine, idle countdown, cost (exit 3: no guard)")
    p.add_argument("--json", action="store_true", help="the whole /state answer as JSON")
    flags.add_engine_flags(p, subcommand=True, guard_only=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qwentui.commands.stop import client_for

    state = client_for(args).state()
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    for line in lines(state):
        print(line)
    return 0


def lines(state: dict) -> list[str]:
    g, e = state["guard"], state["engine"]
    out = [f"guard   : pid {g['pid']}, up {_ago(g['uptime_s'])}, qwentui {state['version']}, "
           f"{g['consoles']} console(s) attached, socket {g['socket']}"]
    label = " [SIMULATED]" if e.get("simulated") else ""
    engine = f"engine  : {e['state']}" + (f" ({e['phase']})" if e['state'] == "starting" and e["phase"] else "")
    if e.get("pid"):
        engine += f", pid {e['pid']}"
    engine += f", {e['model']} at {e['url']}, preset {e['preset'] or '-'}{label}"
    if e.get("error"):
        engine += f"; {e['error']}"
    out.append(engine)
    idle = state.get("idle")
    if idle:
        out.append(f"idle    : {idle['text'] or idle['state']} (action {idle['action']}, watchdog {idle['watchdog']})")
    cost = state.get("cost")
    if cost:
        rate = f"{cost['rate_per_hour']} {cost['currency']}/h" if cost["rate_per_hour"] else "price unknown"
        out.append(f"cost    : {rate} ({cost['basis']}), session {cost['session'] or '-'}, "
                   f"today {cost['today']}, month {cost['month']} {cost['currency']}")
    return out


def _ago(seconds: float) -> str:
    from qwentui.idle.watchdog import clock_text

    return clock_text(seconds)
