"""Where qwentui keeps things: XDG dirs via platformdirs, shipped data via the package.

Nothing here creates directories at import time; callers ask for `ensure_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "qwentui"


def config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"


def state_dir() -> Path:
    """Ledger, cache, generated API key. Honours $XDG_STATE_HOME."""
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP))


def log_dir() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir(APP))


def ensure_dir(path: Path) -> Path:
    """Create `path` if missing and return it. Every directory created here, missing parents
    included (e.g. ~/.local/state), is 0700 whatever the umask; existing ones are untouched."""
    missing = []
    for parent in (path, *path.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            if not new.is_dir():
                raise
            continue  # made meanwhile by someone else: not ours to chmod
        os.chmod(new, 0o700)  # mkdir's mode is masked by the umask
    return path


def write_private(path: Path, text: str) -> None:
    """Write a state file readable by its owner only (0600), atomically."""
    ensure_dir(path.parent)
    write_atomic(path, text.encode("utf-8"), mode=0o600)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Replace `path` with `data` in one step (a crash leaves the old or the new file, never
    half of one). `mode` is filtered by the umask, as for any new file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def data_dir(name: str) -> Path:
    """A shipped data directory (`engine` or `themes`).

    In a wheel it is force-included as `qwentui/_data/<name>`; in a source checkout
    (editable install, tests) it is the top-level `<name>/` beside the package.
    """
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / name
    if packaged.is_dir():
        return packaged
    return here.parent / name
