"""Flags shared by the subcommands, and the one way they reach the config.

A flag that sets a config key is declared once as a `ConfigFlag`; `load_config` hands
every such flag given on the command line to `config.load` as an `Override`, so flags,
environment variables and the file share one coercion and one validation, and an error
names the flag (`--idle-timeout must be greater than zero, got '0s'`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwentui.config import Config, Override


@dataclass(frozen=True)
class ConfigFlag:
    option: str  # "--idle-timeout"
    section: str
    key: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: Any = None  # a flag without a value: the setting it stores (--demo → "sim")
    implies: tuple[tuple[str, str, Any], ...] = ()  # more settings the flag turns on

    @property
    def dest(self) -> str:
        """By key (`fleet --port` is not the engine's --port); a switch by its name, since
        --demo and --engine set the same key."""
        name = f"{self.section}_{self.key}" if self.switch is None else self.option.lstrip("-").replace("-", "_")
        return f"cfg_{name}"

    def add_to(self, group: Any, default: Any) -> None:
        kw: dict[str, Any] = {"dest": self.dest, "help": self.help, "default": default}
        if self.switch is not None:
            group.add_argument(self.option, action="store_true", **kw)
        else:
            group.add_argument(self.option, metavar=self.metavar, choices=self.choices, **kw)

    def overrides(self, args: argparse.Namespace) -> list["Override"]:
        from qwentui.config import Override

        value = getattr(args, self.dest, None)
        if value is None or value is False:
            return []
        first = (Override(self.section, self.key, self.switch, self.option, text=False) if self.switch is not None
                 else Override(self.section, self.key, value, self.option))
        return [first, *(Override(s, k, v, self.option, text=False) for s, k, v in self.implies)]


# Order matters where two flags set one key: the later wins (--demo beats --engine).
ENGINE_FLAGS = (
    ConfigFlag("--engine", "engine", "kind", "engine kind (default from config: sglang)", choices=("sglang", "sim")),
    ConfigFlag("--demo", "engine", "kind", "use the built-in SGLang simulator (labelled SIMULATED); no GPU needed",
               switch="sim"),
    ConfigFlag("--port", "engine", "port", "engine port (overrides engine.port)", metavar="N"),
)
SERVE_FLAGS = (
    ConfigFlag("--stop-grace", "engine", "stop_grace", "wait this long after SIGTERM before SIGKILL "
               "(default: engine.stop_grace, 15s)", metavar="DUR"),
    ConfigFlag("--startup-timeout", "engine", "startup_timeout", "give up on start-up after this long "
               "(default: engine.startup_timeout, 10m)", metavar="DUR"),
)
IDLE_FLAGS = (
    ConfigFlag("--idle-timeout", "idle", "timeout", "stop the engine after this long without any activity, "
               "e.g. 30m (default: idle.timeout; turns the watchdog on; warns for min(2m, a third) of it "
               "unless idle.warn_before is set)", metavar="DUR", implies=(("idle", "enabled", True),)),
    ConfigFlag("--idle-action", "idle", "action", "what to do when idle: stop the engine, or stop it and power "
               "the box off with idle.poweroff_command (default: idle.action)", choices=("stop-engine", "poweroff")),
    ConfigFlag("--dry-run", "idle", "dry_run", "print the poweroff command instead of running it", switch=True),
)
POLICIES = ("round_robin", "cache_aware", "power_of_two", "least_load", "random")
FLEET_FLAGS = (
    ConfigFlag("--port", "fleet", "port", "gateway port (default fleet.port, 30080)", metavar="N"),
    ConfigFlag("--metrics-port", "fleet", "metrics_port", "gateway Prometheus port on 127.0.0.1 "
               "(default fleet.metrics_port, 29000)", metavar="N"),
    ConfigFlag("--policy", "fleet", "policy", "routing policy (default fleet.policy, round_robin)", choices=POLICIES),
)
ALL_FLAGS = (*ENGINE_FLAGS, *SERVE_FLAGS, *IDLE_FLAGS, *FLEET_FLAGS)


def add_engine_flags(parser: argparse.ArgumentParser, *, subcommand: bool = False, guard_only: bool = False) -> None:
    """Flags that choose the engine; shared by the console and the headless commands.

    `subcommand=True` (for `qwentui serve --demo` etc.) uses SUPPRESS defaults so a flag
    given before the subcommand is not reset by the subparser's default. `guard_only`:
    just what picks a guard (status, stop, snooze).
    """
    default = argparse.SUPPRESS if subcommand else None
    group = parser.add_argument_group("engine")
    ENGINE_FLAGS[1].add_to(group, default)  # --demo
    ENGINE_FLAGS[0].add_to(group, default)  # --engine
    if guard_only:
        return
    group.add_argument("--attach", metavar="URL", default=default,
                       help="use an already running server at URL; never stop it")
    ENGINE_FLAGS[2].add_to(group, default)


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    for flag in SERVE_FLAGS:
        flag.add_to(parser, None)
    group = parser.add_argument_group("idle watchdog")
    for flag in IDLE_FLAGS:
        flag.add_to(group, None)


def add_fleet_flags(parser: argparse.ArgumentParser) -> None:
    for flag in FLEET_FLAGS:
        flag.add_to(parser, None)


def overrides(args: argparse.Namespace) -> list["Override"]:
    """The config settings given as flags in `args`, in precedence order."""
    return [o for flag in ALL_FLAGS for o in flag.overrides(args)]


def load_config(args: argparse.Namespace) -> "Config":
    """File, environment, then the flags in `args`: one validation, errors name the origin."""
    from qwentui import config

    return config.load(getattr(args, "config", None), flags=overrides(args))
