"""One private scratch directory per engine launch, and removal of what SGLang leaves behind.

SGLang 0.5.23 leaves, per launch: its ZMQ socket files, made with
`tempfile.NamedTemporaryFile(delete=False)` (srt/server_args.py: PortArgs); a load snapshot
`/dev/shm/sglang_loads_<socket name>_<blake2s(ipc name)>.shm` that it never unlinks
(srt/managers/load_snapshot.py: shm_path_for); and, after a SIGKILL, its Prometheus
multiprocess `tempfile.TemporaryDirectory()`. The engine runs with TMPDIR pointing here, so
its temp files are ours by construction and the /dev/shm names can be computed from them:
nothing of another engine is ever touched. The `--config` YAML holding the API key lives
here too (0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import psutil

SHM_DIR = Path("/dev/shm")
CONFIG_NAME = "launch.yaml"  # SGLang refuses a --config file without a .yaml/.yml suffix
OWNER_NAME = "owner"  # "<qwentui pid> <engine pid>": a dir whose processes are all gone is stale
PREFIX = "qwentui-engine-"


def shm_path_for(ipc_name: str, shm_dir: Path = SHM_DIR) -> Path:
    """SGLang's load-snapshot file for a ZMQ ipc name (same formula as load_snapshot.py)."""
    name = os.path.basename(ipc_name.rstrip("/")) or "default"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    digest = hashlib.blake2s(ipc_name.encode(), digest_size=4).hexdigest()
    return shm_dir / f"sglang_loads_{safe}_{digest}.shm"


class RunDir:
    """`mkdtemp` (0700) in the system temp dir; short, so ZMQ's 107-byte socket paths fit."""

    def __init__(self, base: str | None = None, shm_dir: Path = SHM_DIR) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        self.shm_dir = shm_dir

    def env(self) -> dict[str, str]:
        return {"TMPDIR": str(self.path)}

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    def write_config(self, values: dict[str, str]) -> Path:
        """A `--config` file: JSON text, which is valid YAML (SGLang reads it with yaml.safe_load)."""
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(values) + "\n")
        return self.config_path

    def remove_config(self) -> None:
        try:
            self.config_path.unlink()
        except FileNotFoundError:
            pass

    def write_owner(self, engine_pid: int) -> None:
        (self.path / OWNER_NAME).write_text(f"{os.getpid()} {engine_pid}\n", encoding="utf-8")

    def leftovers(self) -> list[Path]:
        """What removing this directory would take away, /dev/shm snapshots included."""
        if not self.path.is_dir():
            return []
        entries = [p for p in self.path.iterdir() if p.name not in (CONFIG_NAME, OWNER_NAME)]
        shm = {shm_path_for(f"{scheme}{p}", self.shm_dir) for p in entries for scheme in ("ipc://", "")}
        return entries + sorted(p for p in shm if p.exists())

    def clean(self) -> int:
        """Remove the directory and our /dev/shm snapshots; returns how many leftovers went."""
        found = self.leftovers()
        for path in found:
            if path.parent == self.shm_dir:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        shutil.rmtree(self.path, ignore_errors=True)
        return len(found)


def sweep_stale(base: str | None = None, shm_dir: Path = SHM_DIR) -> int:
    """Clean the run dirs of engines whose qwentui and engine are both gone (qwentui was
    SIGKILLed before it could clean up); returns how many leftovers went. A dir with a live
    process, without an owner file, or of another user is left alone."""
    root = Path(base or tempfile.gettempdir())
    removed = 0
    for path in root.glob(PREFIX + "*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
            pids = [int(word) for word in (path / OWNER_NAME).read_text(encoding="utf-8").split()]
        except (OSError, ValueError):
            continue
        if pids and not any(psutil.pid_exists(pid) for pid in pids):
            stale = RunDir.__new__(RunDir)
            stale.path, stale.shm_dir = path, shm_dir
            removed += stale.clean()
    return removed

