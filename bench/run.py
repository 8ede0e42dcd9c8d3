"""qwentui performance harness: each figure next to its baseline, measured in one run.

    python bench/run.py [--quick] [--json out.json] [--only chat,batch,app,help,stop,ledger,fleet]

Starts the simulator itself (no GPU, no model) and prints one line per figure: name,
value, unit, target and ok/MISS ("info" lines have no target). Ratios, not absolute
times: these boxes are shared and noisy. `--quick` takes < 60 s, the full run < 10 min.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Ctx, Figure  # noqa: E402

# Group name → module under bench/figures. Cheap ones first.
GROUPS = ("help", "ledger", "stop", "batch", "chat", "app", "fleet")
ALIASES = {"paint": "app", "idle": "app", "startup": "help"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and shorter windows (< 60 s)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as a JSON list")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help=f"groups to run: {', '.join(GROUPS)} (aliases: {', '.join(ALIASES)})")
    args = p.parse_args(argv)
    args.groups = select(p, args.only)
    return args


def select(p: argparse.ArgumentParser, only: str | None) -> list[str]:
    if not only:
        return list(GROUPS)
    wanted = []
    for name in (n.strip() for n in only.split(",") if n.strip()):
        name = ALIASES.get(name, name)
        if name not in GROUPS:
            p.error(f"unknown figure group {name!r}; choose from {', '.join(GROUPS)}")
        if name not in wanted:
            wanted.append(name)
    return [g for g in GROUPS if g in wanted]


def isolate(tmp: Path) -> None:
    """Ledger, logs and config of everything started here live in `tmp`, never in $HOME."""
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        os.environ[var] = str(tmp / "xdg" / sub)
    for key in [k for k in os.environ if k.startswith("QWENTUI_")]:
        del os.environ[key]


def machine() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}, load {os.getloadavg()[0]:.2f}")


def run_group(name: str, ctx: Ctx) -> list[Figure]:
    module = importlib.import_module(f"figures.{name}")
    try:
        return module.run(ctx)
    except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
        traceback.print_exc()
        return [Figure(f"{name}.error", float("nan"), "", 0.0, "<=", f"{type(exc).__name__}: {exc}")]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(f"# qwentui bench ({'quick' if args.quick else 'full'}): {machine()}", flush=True)
    start = time.perf_counter()
    results: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="qwentui-bench-") as tmp:
        isolate(Path(tmp))
        ctx = Ctx(quick=args.quick, tmp=Path(tmp))
        for group in args.groups:
            t0 = time.perf_counter()
            figures = run_group(group, ctx)
            for fig in figures:
                print(fig.line(), flush=True)
            print(f"#   {group}: {time.perf_counter() - t0:.1f}s", flush=True)
            results += figures
    missed = [f.name for f in results if not f.ok]
    print(f"# {len(results)} figures, {len(missed)} missed{': ' + ', '.join(missed) if missed else ''}; "
          f"{time.perf_counter() - start:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([f.as_json() for f in results], indent=1) + "\n")
    # A missed target is a result, not a failure; a figure that could not be measured is.
    return 1 if any(f.name.endswith(".error") for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
