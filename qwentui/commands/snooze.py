"""`qwentui snooze [DURATION]`: push the guard's idle stop out (default: by idle.timeout)."""

from __future__ import annotations

import argparse

from qwentui.errors import UsageError

SNOOZE_MAX_S = 7 * 24 * 3600.0


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("snooze", help="push the idle stop out by DURATION (default: the idle timeout)")
    p.add_argument("duration", nargs="?", metavar="DURATION", help="e.g. 30m, 1h (default: idle.timeout)")
    flags.add_engine_flags(p, subcommand=True, guard_only=True)
    p.set_defaults(func=run)


def parse(text: str | None) -> float | None:
    from qwentui.config import ConfigError, parse_duration

    if text is None:
        return None
    try:
        seconds = parse_duration(text, "DURATION")
    except ConfigError as exc:
        raise UsageError(exc.message) from None
    if not 1 <= seconds <= SNOOZE_MAX_S:
        raise UsageError(f"DURATION must be between 1s and 7 days, got {text!r}")
    return seconds


def run(args: argparse.Namespace) -> int:
    from qwentui.commands.stop import client_for
    from qwentui.errors import QwentuiError
    from qwentui.idle.watchdog import clock_text

    seconds = parse(args.duration)  # bad input first: exit 2 even with no guard
    result = client_for(args).command("idle/snooze", {} if seconds is None else {"seconds": seconds})
    if not result.get("ok"):
        raise QwentuiError(result.get("error") or "the guard could not snooze")
    left = result.get("seconds_left")
    print(f"snoozed: the idle stop is now in {clock_text(left, up=True)}" if left is not None else "snoozed")
    return 0
