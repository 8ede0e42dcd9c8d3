"""Launch presets: `engine/presets/<name>.toml`, one per GPU class plus the simulator's.

A preset has `description`, `gpu_classes` (which NVML classes `preset = "auto"` maps to
it), `[flags]` (SGLang flags, each from the known-flag table) and, for the simulator,
`[sim]` (`--sim-*` switches added only when the engine kind is "sim").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwentui.engine import flags as F
from qwentui.errors import QwentuiError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIM = "sim"
GENERIC = "generic-cuda"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    gpu_classes: tuple[str, ...]
    flags: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def presets_dir() -> Path:
    from qwentui import paths

    return paths.data_dir("engine") / "presets"


def names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load(name: str) -> Preset:
    """Load one preset; an unknown name is a UsageError listing the known ones."""
    path = presets_dir() / f"{name}.toml"
    if not name or "/" in name or not path.is_file():
        raise UsageError(f"unknown preset {name!r}; known presets: {', '.join(names())}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise QwentuiError(f"broken preset file {path}: {exc}") from None
    return _parse(name, data, path)


def _parse(name: str, data: dict[str, Any], path: Path) -> Preset:
    unknown = set(data) - {"description", "gpu_classes", "flags", "sim"}
    if unknown:
        raise QwentuiError(f"preset {path}: unknown keys {sorted(unknown)}")
    flag_table = dict(data.get("flags", {}))
    for flag, value in flag_table.items():
        if flag not in F.FLAGS:
            raise QwentuiError(f"preset {path}: {flag} is not a known SGLang 0.5.23 flag")
        if flag in F.MANAGED:
            raise QwentuiError(f"preset {path}: {flag} is managed by qwentui, not by presets")
        F.check_value(flag, value, f"preset {path}")
    sim_table = dict(data.get("sim", {}))
    for flag in sim_table:
        if not flag.startswith("--sim-"):
            raise QwentuiError(f"preset {path}: [sim] may only hold --sim-* flags, got {flag}")
    return Preset(name, str(data.get("description", "")), tuple(data.get("gpu_classes", ())),
                  flag_table, sim_table, path)


def for_gpu_class(gpu_cls: str | None) -> str:
    """Preset name for an NVML class; unknown or missing GPU → generic-cuda."""
    if gpu_cls:
        for name in names():
            if name != SIM and gpu_cls in load(name).gpu_classes:
                return name
    return GENERIC


def sglang_mem_fraction(total_bytes: float) -> float:
    """The `--mem-fraction-static` SGLang 0.5.23 picks itself when the flag is not given
    (srt/arg_groups/memory_hook.py: it reserves room for the prefill chunk, CUDA graphs and
    the CUDA context, both growing with the card's size bracket). The values are what that
    formula gives on the cards the presets cover (T4 0.735, L4/A10G 0.684, A100-40 0.823,
    A100-80 0.833, H100 0.830); other sizes take their bracket's value (0.83 above 60 GiB)."""
    gib = total_bytes / 2**30
    if gib < 20:
        return 0.735
    if gib < 35:
        return 0.684
    if gib < 60:
        return 0.823
    return 0.83
