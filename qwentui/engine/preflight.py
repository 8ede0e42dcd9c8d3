"""Checks before spawning: a bad interpreter, model path or busy port fails in a second,
not after a minute of loading weights (SGLang binds its port only at the very end)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from qwentui.config import EngineConfig
from qwentui.engine import procs
from qwentui.engine.argv import base_url
from qwentui.errors import UsageError

_PROBE = ("import importlib.util as u, sys\n"
          "s = u.find_spec('sglang')\n"
          "if s is None: sys.exit(3)\n"
          "import importlib.metadata as m\n"
          "try: print(m.version('sglang'))\n"
          "except m.PackageNotFoundError: print('unknown')\n")


def engine_python(engine: EngineConfig) -> str:
    """The interpreter that will run SGLang; a missing one is a UsageError."""
    if not engine.python:
        return sys.executable
    found = shutil.which(os.path.expanduser(engine.python))
    if not found:
        raise UsageError(f"engine.python {engine.python!r} not found or not executable")
    return found


def sglang_version(python: str) -> str | None:
    """SGLang's version as seen by `python` (without importing it), None if absent."""
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or "unknown") if done.returncode == 0 else None


def check_sglang(engine: EngineConfig) -> str:
    python = engine_python(engine)
    version = sglang_version(python)
    if version is None:
        raise UsageError(f"{python} has no sglang module: pip install 'qwentui[sglang]' there, "
                         "or set engine.python to a Python with SGLang",
                         hint="SGLang 0.5.23 needs Python 3.11-3.13, glibc >= 2.34 and a CUDA 13 driver; "
                              "elsewhere the extra installs nothing: `qwentui doctor` shows what to change")
    return version


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "huggingface" / "hub"


def model_available_locally(model: str) -> bool:
    path = Path(model).expanduser()
    if path.is_dir():
        return True
    snapshots = hf_cache_dir() / f"models--{model.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any((s / "config.json").exists() for s in snapshots.iterdir())


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def check_model(engine: EngineConfig) -> None:
    model = engine.model
    if looks_like_path(model) and not Path(model).expanduser().is_dir():
        raise UsageError(f"engine.model {model!r} is not a directory")
    if offline() and not model_available_locally(model):
        raise UsageError(f"engine.model {model!r} is not on this machine and the Hugging Face hub is "
                         f"offline (HF_HUB_OFFLINE); download it first or point engine.model at a local dir")


def check_port(engine: EngineConfig) -> None:
    try:
        if procs.port_free(engine.host, engine.port):
            return
    except OSError as exc:
        raise UsageError(f"cannot bind {engine.host}:{engine.port}: {exc.strerror or exc} "
                         "(engine.host must be an address of this machine)") from None
    owner = procs.port_owner(engine.port)
    who = f" by {owner}" if owner else ""
    raise UsageError(f"port {engine.port} on {engine.host} is already in use{who}; choose another "
                     f"--port, or use it with --attach {base_url(engine.host, engine.port)}")


def run_all(engine: EngineConfig) -> None:
    """Everything that can be checked before a launch; raises UsageError on the first problem."""
    if engine.kind == "sglang":
        check_sglang(engine)
        check_model(engine)
    check_port(engine)
