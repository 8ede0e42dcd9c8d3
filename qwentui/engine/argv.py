"""From config + GPU to the exact argv of the engine: one builder for SGLang and the simulator."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from qwentui.config import Config, EngineConfig, mask_secret
from qwentui.engine import apikey, multigpu, presets
from qwentui.telemetry import nvml as gpu
from qwentui.engine import flags as F
from qwentui.errors import UsageError

SIM_MODULE = "qwentui.sim"
# SGLang 0.5.23 warns that `python -m sglang.launch_server` is deprecated and recommends
# `sglang serve` (python/sglang/launch_server.py), the console script for
# `sglang.cli.main:main` (python/sglang/cli/main.py, which has no `__main__` block). Calling
# that function through `engine.python -c` runs the same code with any interpreter.
SGLANG_ENTRY = ("-c", "import sys; from sglang.cli.main import main; sys.exit(main())", "serve")


@dataclass(frozen=True)
class LaunchPlan:
    argv: tuple[str, ...]
    kind: str
    preset: str
    gpu_name: str | None
    gpu_class: str | None
    api_key: str
    base_url: str
    served_model: str
    gpus: int = 1  # SGLang data-parallel replicas (engine.gpus); see engine/multigpu.py
    host: str = "127.0.0.1"  # where the engine listens, read back from the final argv

    def config_file(self) -> dict[str, str]:
        """Launch arguments that go through SGLang's `--config` YAML instead of argv.

        argv is world-readable (`ps`, /proc/PID/cmdline) and SGLang reports it as
        `/server_info`'s launch_command; the YAML file is 0600 and removed after stop.
        SGLang prepends the file's arguments to argv (srt/server_args_config_parser.py:
        ConfigArgumentMerger), so a key in the file behaves exactly like `--api-key`.
        """
        return {"api-key": self.api_key} if self.api_key else {}

    def shown_argv(self, reveal: bool = False) -> list[str]:
        """argv plus what the config file carries, as one command a person can read or rerun."""
        extra = ["--api-key", self.api_key if reveal else mask_secret(self.api_key)] if self.api_key else []
        return list(self.argv) + extra

    def masked_argv(self) -> list[str]:
        return self.shown_argv(reveal=False)


def base_url(host: str, port: int) -> str:
    """URL a local client uses: a wildcard bind is reached through loopback."""
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in connect:
        connect = f"[{connect}]"
    return f"http://{connect}:{port}"


def resolve_gpu(name: str) -> tuple[str, str]:
    """`--gpu` value (class like 't4' or an NVML name) → (name, class); unknown → UsageError."""
    for cls in gpu.GPU_CLASSES:
        if name.strip().upper() == cls:
            return cls, cls
    cls = gpu.gpu_class(name)
    if cls not in gpu.GPU_CLASSES:
        raise UsageError(f"unknown GPU {name!r}; known classes: {', '.join(gpu.GPU_CLASSES)} "
                         f"(use --preset {presets.GENERIC} for other cards)")
    return name, cls


def choose_preset(engine: EngineConfig, gpu_name: str | None, preset: str | None,
                  *, detect: bool = True) -> tuple[str, str | None, str | None]:
    """(preset name, gpu name, gpu class). 'auto' → by GPU class; sim → 'sim'."""
    wanted = preset or engine.preset
    if gpu_name is None and detect and engine.kind == "sglang" and wanted == "auto":
        gpu_name = gpu.detect_gpu_name()
    cls = gpu.gpu_class(gpu_name) if gpu_name else None
    if wanted != "auto":
        presets.load(wanted)  # unknown name → UsageError
        return wanted, gpu_name, cls
    if engine.kind == "sim" and gpu_name is None:
        return presets.SIM, None, None
    return presets.for_gpu_class(cls), gpu_name, cls


def managed_clash(name: str) -> str | None:
    """The managed flag `name` would set: itself, or one it abbreviates.

    argparse (allow_abbrev, SGLang's default) takes any unambiguous prefix, so `--hos`
    after our `--host 127.0.0.1` rebinds the engine. A prefix that is also another known
    flag (`--model` of `--model-path`) is still a clash: it is the managed value either way.
    """
    if name in F.MANAGED:
        return name
    if len(name) <= 2:
        return None
    return next((m for m in F.MANAGED if m.startswith(name)), None)


def check_extra_args(args: list[str], kind: str) -> None:
    """Reject flags qwentui manages (and --sim-* outside the simulator), naming the flag."""
    for arg in args:
        if not arg.startswith("--"):
            continue
        name = F.flag_name(arg)
        clash = managed_clash(name)
        if clash:
            raise UsageError(f"engine.extra_args: {name} conflicts with {clash}, which qwentui sets "
                             f"from {F.MANAGED[clash]}; set that instead")
        if name.startswith("--sim-") and kind != "sim":
            raise UsageError(f"engine.extra_args: {name} only works with the simulator (engine.kind = 'sim')")


def _apply_overrides(table: dict[str, Any], overrides: dict[str, Any], *, sim: bool) -> dict[str, Any]:
    out = dict(table)
    for flag, value in overrides.items():
        if not isinstance(flag, str) or not flag.startswith("--"):
            raise UsageError(f"engine.overrides: keys are SGLang flags like '--context-length', got {flag!r}")
        clash = managed_clash(F.flag_name(flag))
        if clash:
            raise UsageError(f"engine.overrides: {flag} conflicts with {clash}, which qwentui sets "
                             f"from {F.MANAGED[clash]}; set that instead")
        if flag.startswith("--sim-") != sim:
            continue
        F.check_value(flag, value, "engine.overrides")
        out[flag] = value
    return out


def _validate_overrides(overrides: dict[str, Any], kind: str) -> None:
    for flag in overrides:
        if isinstance(flag, str) and flag.startswith("--sim-") and kind != "sim":
            raise UsageError(f"engine.overrides: {flag} only works with the simulator (engine.kind = 'sim')")
        if isinstance(flag, str) and flag.startswith("--") and (clash := managed_clash(F.flag_name(flag))):
            raise UsageError(f"engine.overrides: {flag} conflicts with {clash}, which qwentui sets "
                             f"from {F.MANAGED[clash]}; set that instead")


def final_host(argv: list[str] | tuple[str, ...]) -> str:
    """The address the engine will bind, as its argparse reads argv: the last --host wins."""
    host = "127.0.0.1"  # SGLang's default
    for i, word in enumerate(argv):
        if word == "--host" and i + 1 < len(argv):
            host = argv[i + 1]
        elif word.startswith("--host="):
            host = word.partition("=")[2]
    return host


def plan(cfg: Config, gpu_name: str | None = None, preset: str | None = None, *,
         detect: bool = True, create_key: bool = True) -> LaunchPlan:
    e = cfg.engine
    _validate_overrides(e.overrides, e.kind)
    check_extra_args(list(e.extra_args), e.kind)
    name, gpu_name, cls = choose_preset(e, gpu_name, preset, detect=detect)
    chosen = presets.load(name)
    python = sys.executable if e.kind == "sim" or not e.python else e.python
    entry = ("-m", SIM_MODULE) if e.kind == "sim" else SGLANG_ENTRY
    argv = [python, *entry, "--model-path", e.model, "--host", e.host, "--port", str(e.port)]
    if e.served_model_name:
        argv += ["--served-model-name", e.served_model_name]
    argv += ["--reasoning-parser", "qwen3", "--enable-metrics"]
    for flag, value in _apply_overrides(chosen.flags, e.overrides, sim=False).items():
        argv += F.render(flag, value)
    gpus = gpu_count(e, detect=detect)
    argv += multigpu.dp_argv(gpus)
    if e.kind == "sim":
        sim_table = presets.load(presets.SIM).sim if name != presets.SIM else chosen.sim
        for flag, value in _apply_overrides(sim_table, e.overrides, sim=True).items():
            argv += F.render(flag, value)
    argv += list(e.extra_args)
    host = final_host(argv)
    key = apikey.resolve(e, create=create_key, host=host)
    return LaunchPlan(tuple(argv), e.kind, name, gpu_name, cls, key, base_url(e.host, e.port),
                      e.served_model_name or e.model, gpus, host)


def gpu_count(engine: EngineConfig, *, detect: bool = True) -> int:
    """engine.gpus checked against NVML (SGLang only; the simulator has no GPUs to count)."""
    names = multigpu.inventory_names() if detect and engine.kind == "sglang" else None
    return multigpu.resolve(engine.gpus, names)


def build_argv(cfg: Config, gpu_name: str | None = None, preset: str | None = None) -> list[str]:
    """The exact argv qwentui would run, minus `--config FILE` (the key travels in that file)."""
    return list(plan(cfg, gpu_name, preset).argv)


def mask_argv(argv: list[str], api_key: str = "") -> list[str]:
    out = list(argv)
    for i, word in enumerate(out):
        if word in ("--api-key", "--admin-api-key") and i + 1 < len(out):
            out[i + 1] = mask_secret(out[i + 1])
        elif word.startswith(("--api-key=", "--admin-api-key=")):
            flag, _, value = word.partition("=")
            out[i] = f"{flag}={mask_secret(value)}"
        elif api_key and api_key in word:
            out[i] = word.replace(api_key, mask_secret(api_key))
    return out


def with_engine(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, **changes))
