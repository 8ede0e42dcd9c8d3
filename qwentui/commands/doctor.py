"""`qwentui doctor`: checks: can this box run Qwen3-1.7B under SGLang, and what would qwentui do?

Each check is a line: OK, FAIL (with a fix) or WARN. WARN never fails the run: it marks
what is missing but not needed, e.g. no GPU while the engine kind is "sim" (the simulator
needs none), or an SGLang version other than the tested one.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from qwentui import __version__
from qwentui.config import Config, is_loopback

OK, FAIL, WARN = "ok", "fail", "warn"
TESTED_SGLANG = "0.5.23"
WEIGHTS_BYTES = 3.4e9  # Qwen3-1.7B in fp16/bf16
KV_BYTES_PER_TOKEN = 2 * 28 * 8 * 128 * 2  # K+V x 28 layers x 8 KV heads x 128 dims x 2 bytes
MIN_CC = (7, 5)  # SGLang only supports sm75 and above
# What the pinned SGLang's wheels need (contracts/sglang.md §11): cp311-cp313 wheels for
# manylinux_2_34, built against CUDA 13 (flashinfer_python[cu13], cuda-python>=13).
SGLANG_PYTHONS = ((3, 11), (3, 13))
SGLANG_GLIBC = (2, 34)
SGLANG_CUDA = (13, 0)
_PLATFORM_PROBE = ("import os, sys\n"
                   "print('%d.%d' % sys.version_info[:2])\n"
                   "try: print(os.confstr('CS_GNU_LIBC_VERSION').split()[-1])\n"
                   "except (ValueError, OSError, AttributeError): print('')\n")


@dataclass(frozen=True)
class Check:
    mark: str  # OK | FAIL | WARN
    label: str
    detail: str
    hint: str = ""


def run_checks(cfg: Config | None, config_error: str = "", *, nvml: Any = None,
               sglang_probe: Callable[[str], str | None] | None = None,
               platform_probe: Callable[[str], tuple[str, str]] | None = None) -> list[Check]:
    """All checks, in display order. `cfg` None means the config did not load."""
    out = [Check(OK, "python", f"{sys.version.split()[0]} ({sys.executable})"),
           Check(OK, "qwentui", __version__)]
    if cfg is None:
        out.append(Check(FAIL, "config", config_error, "fix the file (qwentui config show / config path)"))
        cfg = Config()
    else:
        out.append(Check(OK, "config", f"valid ({cfg.source})"))
    sim = cfg.engine.kind == "sim"
    out.append(Check(OK, "engine", "sim: qwentui's simulator, labelled SIMULATED" if sim else
                     f"sglang, model {cfg.engine.model}"))
    from qwentui.telemetry import nvml as gpu

    report = gpu.probe(nvml)
    out.append(_sglang(cfg, sim, sglang_probe))
    out.append(_sglang_platform(cfg, sim, report, platform_probe or engine_platform))
    out.extend(_gpus(cfg, sim, report))
    out.append(_model(cfg, sim))
    out.append(_port(cfg))
    out.extend(_dirs())
    out.append(_api_key(cfg))
    out.append(_idle(cfg))
    return out


def _sglang(cfg: Config, sim: bool, probe: Callable[[str], str | None] | None) -> Check:
    from qwentui.engine import preflight
    from qwentui.errors import UsageError

    bad = WARN if sim else FAIL
    fix = "pip install 'qwentui[sglang]', or set engine.python to a Python with SGLang (engine/README.md)"
    try:
        python = preflight.engine_python(cfg.engine)
    except UsageError as exc:
        return Check(bad, "sglang", exc.message, "set engine.python to an existing interpreter")
    version = (probe or preflight.sglang_version)(python)
    if version is None:
        note = " (not needed for the simulator)" if sim else ""
        return Check(bad, "sglang", f"not importable from {python}{note}", fix)
    if version != TESTED_SGLANG:
        return Check(WARN, "sglang", f"{version} from {python}; qwentui is tested with {TESTED_SGLANG}",
                     "pip install -r engine/requirements-sglang.txt")
    return Check(OK, "sglang", f"{version} from {python}")


def engine_platform(python: str) -> tuple[str, str]:
    """("3.11", "2.36"): the engine Python's version and the C library's; "" when unknown."""
    import subprocess

    try:
        done = subprocess.run([python, "-c", _PLATFORM_PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    lines = done.stdout.split("\n") if done.returncode == 0 else []
    return (lines[0].strip() if lines else ""), (lines[1].strip() if len(lines) > 1 else "")


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return None


def _sglang_platform(cfg: Config, sim: bool, report: Any, probe: Callable[[str], tuple[str, str]]) -> Check:
    """Python, glibc and the driver's CUDA against what the pinned SGLang's wheels need."""
    from qwentui.engine import preflight
    from qwentui.errors import UsageError

    try:
        python = preflight.engine_python(cfg.engine)
    except UsageError:
        python = ""
    py, glibc = probe(python) if python else ("", "")
    cuda = report.cuda if report.status == "ok" else ""
    found = f"Python {py or '?'}, glibc {glibc or '?'}, driver CUDA {cuda or '?'}"
    problems, fixes = [], []
    lo, hi = SGLANG_PYTHONS
    if _version(py) is not None and not lo <= _version(py) <= hi:
        problems.append(f"Python {py} (needs 3.{lo[1]}-3.{hi[1]})")
        fixes.append(f"make a venv with Python 3.{lo[1]}-3.{hi[1]} (e.g. python3.12 -m venv /opt/sglang), "
                     "/opt/sglang/bin/pip install -r engine/requirements-sglang.txt, "
                     "then set engine.python = \"/opt/sglang/bin/python\"")
    if _version(glibc) is not None and _version(glibc) < SGLANG_GLIBC:
        problems.append(f"glibc {glibc} (wheels need manylinux_2_34, glibc >= 2.34)")
        fixes.append("use an OS with glibc >= 2.34 (Ubuntu 22.04+, Debian 12+, RHEL 9+) or pin an SGLang "
                     "release with wheels for this glibc in engine/requirements-sglang.txt")
    if _version(cuda) is not None and _version(cuda) < SGLANG_CUDA:
        problems.append(f"driver CUDA {cuda} (SGLang {TESTED_SGLANG} is built for CUDA 13)")
        fixes.append("update the NVIDIA driver to one that supports CUDA 13 (580 or newer), or pin an SGLang "
                     f"release built for CUDA {cuda} in engine/requirements-sglang.txt")
    if not problems:
        return Check(OK, "sglang-platform", f"{found}: fits SGLang {TESTED_SGLANG}'s wheels")
    note = " (not needed for the simulator)" if sim else ""
    return Check(WARN if sim else FAIL, "sglang-platform",
                 f"SGLang {TESTED_SGLANG} cannot install here: {'; '.join(problems)}{note}", "; or ".join(fixes))


def _gpus(cfg: Config, sim: bool, report: Any) -> list[Check]:
    bad = WARN if sim else FAIL
    if report.status != "ok":
        note = " (not needed for the simulator)" if sim else ""
        return [Check(bad, "gpu", f"{report.message or report.status}{note}",
                      "install the NVIDIA driver so nvidia-smi works, or use --demo for the simulator")]
    cuda = f", CUDA {report.cuda}" if report.cuda else ""
    out = [Check(OK, "nvidia", f"driver {report.driver}{cuda}, {len(report.gpus)} GPU(s)")]
    out.extend(_one_gpu(cfg, g, bad) for g in report.gpus)
    out.append(_multi_gpu(cfg, [g.name for g in report.gpus], bad))
    return out


def _multi_gpu(cfg: Config, names: list[str], bad: str) -> Check:
    """engine.gpus against this box: how many replicas, and no dp over mixed models."""
    from qwentui.engine import multigpu
    from qwentui.errors import UsageError

    mixed = multigpu.mixed_models(names)
    try:
        count = multigpu.resolve(cfg.engine.gpus, names)
    except UsageError as exc:
        fix = "set engine.gpus = 1 (one GPU) or use a box of identical GPUs" if mixed else \
            "set engine.gpus to the GPU count or \"all\""
        return Check(bad, "gpus", exc.message, fix)
    if mixed:
        return Check(WARN, "gpus", f"mixed GPU models ({', '.join(mixed)}): the engine uses GPU 0 only; "
                     "data parallelism over mixed models is refused")
    if count > 1:
        return Check(OK, "gpus", f"engine.gpus = {cfg.engine.gpus!r}: one SGLang server, --dp-size {count} "
                     f"(a replica per GPU)")
    spare = f"; {len(names) - 1} more idle (set engine.gpus = \"all\" to use them)" if len(names) > 1 else ""
    return Check(OK, "gpus", f"engine uses 1 GPU{spare}")


def _one_gpu(cfg: Config, info: Any, bad: str) -> Check:
    from qwentui.engine import presets
    from qwentui.telemetry import nvml as gpu

    cls = gpu.gpu_class(info.name)
    name = presets.for_gpu_class(cls) if cfg.engine.preset == "auto" else cfg.engine.preset
    flags = presets.load(name).flags
    price = _price(cfg, cls)
    total = info.memory_total_bytes
    cc = f", sm{info.compute_capability[0]}{info.compute_capability[1]}" if info.compute_capability else ""
    head = f"GPU {info.index}: {info.name}, {total / 2**30:.1f} GiB{cc} → class {cls}, preset {name}, {price}"
    if info.compute_capability and tuple(info.compute_capability) < MIN_CC:
        return Check(bad, "gpu", head + "; SGLang needs sm75 or newer", "use a T4 or newer GPU")
    fraction = _number(cfg.engine.overrides.get("--mem-fraction-static", flags.get("--mem-fraction-static")),
                       presets.sglang_mem_fraction(total))
    context = int(_number(cfg.engine.overrides.get("--context-length", flags.get("--context-length")), 40960))
    need = WEIGHTS_BYTES + context * KV_BYTES_PER_TOKEN
    have = total * fraction
    fit = (f"; Qwen3-1.7B needs {need / 1e9:.1f} GB (3.4 GB weights + KV for {context} tokens) "
           f"of {have / 1e9:.1f} GB static ({fraction:g} of the card)")
    if need > have:
        return Check(bad, "gpu", head + fit + ": does NOT fit",
                     "lower --context-length or raise --mem-fraction-static in engine.overrides")
    return Check(OK, "gpu", head + fit + ": fits")


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _price(cfg: Config, cls: str) -> str:
    try:
        from qwentui.cost import prices
    except ImportError:
        value = cfg.cost.price_per_hour or cfg.cost.prices.get(cls)
        return f"{value} {cfg.cost.currency}/h" if value else "price unknown"
    per_hour = prices.price_per_hour(cfg, cls)
    return f"{prices.format_price(per_hour, cfg.cost.currency)}/h" if per_hour is not None else \
        "price unknown (set cost.price_per_hour)"


def _model(cfg: Config, sim: bool) -> Check:
    from qwentui.engine import preflight
    from qwentui.errors import UsageError

    model = cfg.engine.model
    if sim:
        return Check(OK, "model", f"{model} (the simulator loads no weights)")
    try:
        preflight.check_model(cfg.engine)
    except UsageError as exc:
        return Check(FAIL, "model", exc.message, "huggingface-cli download Qwen/Qwen3-1.7B while online")
    if preflight.model_available_locally(model):
        return Check(OK, "model", f"{model} is on this machine")
    return Check(WARN, "model", f"{model} will be downloaded from the Hugging Face hub on first start (~3.4 GB)")


def _port(cfg: Config) -> Check:
    from qwentui.engine import preflight
    from qwentui.errors import UsageError

    e = cfg.engine
    try:
        preflight.check_port(e)
    except UsageError as exc:
        return Check(FAIL, "port", exc.message, "stop what holds it, choose engine.port, or use --attach")
    return Check(OK, "port", f"{e.host}:{e.port} is free")


def _dirs() -> list[Check]:
    from qwentui import paths

    out = []
    for label, directory in (("state dir", paths.state_dir()), ("log dir", paths.log_dir())):
        probe = directory / f".doctor-{os.getpid()}"
        try:
            paths.write_private(probe, "ok\n")
            probe.unlink()
        except OSError as exc:
            out.append(Check(FAIL, label, f"{directory} is not writable: {exc.strerror or exc}",
                             "fix its permissions or set XDG_STATE_HOME"))
            continue
        out.append(Check(OK, label, f"{directory} is writable"))
    return out


def _api_key(cfg: Config) -> Check:
    from qwentui.config import mask_secret
    from qwentui.engine import apikey

    e = cfg.engine
    if is_loopback(e.host):
        note = " (engine.api_key set)" if e.api_key else ", no API key needed"
        return Check(OK, "api key", f"host {e.host} is loopback only{note}")
    key = apikey.resolve(e, create=False)
    if key:
        where = "engine.api_key" if e.api_key else str(apikey.key_path())
        return Check(OK, "api key", f"host {e.host} is reachable from outside: key {mask_secret(key)} from {where}")
    return Check(OK, "api key", f"host {e.host} is reachable from outside: a key will be generated "
                 f"on first start and stored 0600 at {apikey.key_path()}")


def _idle(cfg: Config) -> Check:
    from qwentui.config import format_duration

    i = cfg.idle
    if not i.enabled:
        return Check(WARN, "idle", "idle watchdog disabled: the engine runs (and bills) until stopped")
    then = "stop the engine" if i.action == "stop-engine" else \
        f"stop the engine, then run {' '.join(i.poweroff_command)}" + (" (dry run)" if i.dry_run else "")
    if i.action == "poweroff":
        from qwentui.errors import UsageError
        from qwentui.idle.actions import check_poweroff

        try:
            note = check_poweroff(i.poweroff_command)
        except UsageError as exc:
            return Check(FAIL, "idle", f"idle.action = poweroff, but {exc.message}")
        if note:
            return Check(WARN, "idle", f"after {format_duration(i.timeout)} without activity: {then}; "
                         f"{note.removeprefix('warning: ')}")
    return Check(OK, "idle", f"after {format_duration(i.timeout)} without activity: {then}")


MARKS = {"ok": "✓", "fail": "✗", "warn": "–"}


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("doctor", help="check this box: Python, SGLang, GPU, model fit, port, dirs")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    flags.add_engine_flags(p, subcommand=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from qwentui.commands import flags
    from qwentui.errors import ConfigError

    try:
        cfg, error = flags.load_config(args), ""
    except ConfigError as exc:
        cfg, error = None, exc.message
    checks = run_checks(cfg, error)
    failed = any(c.mark == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
        return 1 if failed else 0
    for c in checks:
        print(f"{MARKS[c.mark]} {c.label}: {c.detail}")
        if c.hint and c.mark != OK:
            print(f"    fix: {c.hint}")
    print("all checks passed" if not failed else "some checks failed (✗): see the fixes above")
    return 1 if failed else 0
