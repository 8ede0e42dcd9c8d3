"""`qwentui config init|show|path`."""

from __future__ import annotations

import argparse
from pathlib import Path

from qwentui.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="create, show or locate the config file")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=type(p))
    init = verbs.add_parser("init", help="write a commented default config file (0600)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--path", metavar="PATH", help="where to write (default: the config path)")
    init.set_defaults(func=run_init)
    show = verbs.add_parser("show", help="print the effective config as TOML, secrets masked")
    show.add_argument("--reveal", action="store_true", help="print secrets in clear")
    show.set_defaults(func=run_show)
    verbs.add_parser("path", help="print the paths qwentui uses").set_defaults(func=run_path)


def _target(args: argparse.Namespace) -> Path:
    from qwentui import paths

    chosen = getattr(args, "path", None) or args.config
    return Path(chosen).expanduser() if chosen else paths.config_file()


def run_init(args: argparse.Namespace) -> int:
    from qwentui import config, paths

    target = _target(args)
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists; use --force to overwrite it")
    try:
        paths.write_private(target, config.default_file_text())
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from qwentui import config
    from qwentui.commands import flags

    cfg = flags.load_config(args)
    print(f"# effective config (source: {cfg.source})")
    print(config.to_toml(cfg, mask=not args.reveal), end="")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from qwentui import paths

    print(f"config: {_target(args)}")
    print(f"state:  {paths.state_dir()}")
    print(f"logs:   {paths.log_dir()}")
    return 0
