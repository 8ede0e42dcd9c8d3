"""`qwentui engine command|presets`: what qwentui would launch, without launching it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("engine", help="show the engine launch command and the presets")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=type(p))
    cmd = verbs.add_parser("command", help="print the exact argv qwentui would run (API key masked)")
    cmd.add_argument("--gpu", metavar="NAME", help="pretend this GPU is present: a class (T4, L4, A10G, "
                     "A100, H100) or an NVML name like 'Tesla T4'")
    cmd.add_argument("--preset", metavar="NAME", help="use this preset instead of engine.preset")
    cmd.add_argument("--json", action="store_true", help="print the argv as a JSON list")
    cmd.add_argument("--reveal", action="store_true", help="show the API key in clear")
    flags.add_engine_flags(cmd, subcommand=True)
    cmd.set_defaults(func=run_command)
    presets = verbs.add_parser("presets", help="list the launch presets and the GPUs they fit")
    presets.add_argument("--json", action="store_true", help="print them as JSON")
    presets.set_defaults(func=run_presets)


def run_command(args: argparse.Namespace) -> int:
    import json
    import shlex

    from qwentui.commands import flags
    from qwentui.engine import argv as argv_mod

    cfg = flags.load_config(args)
    gpu_name = None
    if args.gpu:
        gpu_name, _ = argv_mod.resolve_gpu(args.gpu)
    launch = argv_mod.plan(cfg, gpu_name, args.preset)
    words = launch.shown_argv(reveal=args.reveal)
    if args.json:
        print(json.dumps(words, ensure_ascii=False))
        return 0
    gpu = f"{launch.gpu_name} → {launch.gpu_class}" if launch.gpu_name else "none detected"
    label = "  [SIMULATED]" if launch.kind == "sim" else ""
    print(f"# preset {launch.preset} (GPU: {gpu}), kind {launch.kind}{label}")
    print(shlex.join(words))
    return 0


def run_presets(args: argparse.Namespace) -> int:
    import json

    from qwentui.engine import presets

    rows = [presets.load(name) for name in presets.names()]
    if args.json:
        print(json.dumps([{"name": p.name, "description": p.description, "gpu_classes": list(p.gpu_classes),
                           "flags": p.flags, "sim": p.sim} for p in rows], indent=2))
        return 0
    width = max(len(p.name) for p in rows)
    for p in rows:
        gpus = ", ".join(p.gpu_classes) or "-"
        print(f"{p.name:<{width}}  [{gpus}]  {p.description}")
    return 0
