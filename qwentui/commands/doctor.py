"""`qwentui doctor`: one line per check (✓ ok, ✗ fails with a fix, – warning); exit 1 on any ✗."""

from __future__ import annotations

import argparse

MARKS = {"ok": "✓", "fail": "✗", "warn": "–"}


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui import cli

    p = sub.add_parser("doctor", help="check this box: Python, SGLang, GPU, model fit, port, dirs")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    cli.add_engine_flags(p, subcommand=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from qwentui import cli
    from qwentui.engine import doctor
    from qwentui.errors import ConfigError

    try:
        cfg, error = cli.load_config(args), ""
    except ConfigError as exc:
        cfg, error = None, exc.message
    checks = doctor.run_checks(cfg, error)
    failed = any(c.mark == doctor.FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
        return 1 if failed else 0
    for c in checks:
        print(f"{MARKS[c.mark]} {c.label}: {c.detail}")
        if c.hint and c.mark != doctor.OK:
            print(f"    fix: {c.hint}")
    print("all checks passed" if not failed else "some checks failed (✗): see the fixes above")
    return 1 if failed else 0
