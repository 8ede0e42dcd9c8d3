"""Where a guard lives: its lock file, control socket and log, and taking the lock.

One guard per state dir (and per engine kind: the demo's simulator has its own guard,
like its own ledger). The lock is an flock held for the guard's life, so a guard killed
with SIGKILL leaves nothing that blocks the next one: the kernel drops the lock, and a
socket file found next to a free lock is stale and replaced. A socket path longer than
a Unix socket allows, or a state dir that is not writable, moves lock and socket to
`$XDG_RUNTIME_DIR/qwentui/` (or a 0700 dir under /tmp), keyed by the state dir.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qwentui import paths
from qwentui.errors import QwentuiError, UsageError

SOCKET_MAX = 100  # sun_path holds 108 bytes; keep a margin


class GuardRunning(QwentuiError):
    """Another guard already holds the lock for this state dir."""

    exit_code = 1


@dataclass(frozen=True)
class GuardPlace:
    dir: Path  # lock and socket (0700)
    name: str  # "guard" or "guard-demo"
    log: Path  # the detached guard's own output (0600)

    @property
    def lock(self) -> Path:
        return self.dir / f"{self.name}.lock"

    @property
    def socket(self) -> Path:
        return self.dir / f"{self.name}.sock"


def guard_name(kind: str) -> str:
    return "guard-demo" if kind == "sim" else "guard"


def place(kind: str = "sglang") -> GuardPlace:
    """The guard's place for this state dir and engine kind (nothing is created)."""
    name = guard_name(kind)
    state = paths.state_dir()
    log = paths.log_dir() / f"{name}.log"
    if len(str(state / f"{name}.sock")) <= SOCKET_MAX and _writable(state):
        return GuardPlace(state, name, log)
    key = hashlib.sha256(str(state).encode()).hexdigest()[:12]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "qwentui" if runtime and _writable(Path(runtime)) else \
        Path(tempfile.gettempdir()) / f"qwentui-{os.getuid()}"
    if not _writable(log.parent):
        log = base / key / f"{name}.log"  # a read-only state dir: the guard still needs its log
    return GuardPlace(base / key, name, log)


def _writable(path: Path) -> bool:
    """Can we create files in `path` (or in its nearest existing parent)?"""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _private_dir(path: Path) -> None:
    paths.ensure_dir(path)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise UsageError(f"{path} belongs to uid {info.st_uid}, not to you: the guard will not use it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


class GuardLock:
    """The flock that makes this process the state dir's one guard."""

    def __init__(self, where: GuardPlace) -> None:
        self.where = where
        self._fd: int | None = None

    def acquire(self, pid: int | None = None) -> None:
        """Take the lock or raise GuardRunning naming the running guard; clear a stale socket."""
        try:
            _private_dir(self.where.dir)
            fd = os.open(self.where.lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise QwentuiError(f"cannot create the guard lock {self.where.lock}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise GuardRunning(running_text(self.where)) from None
        self._fd = fd
        clear_stale_socket(self.where.socket)
        os.ftruncate(fd, 0)
        os.write(fd, f"{pid or os.getpid()}\n{self.where.socket}\n".encode())

    def acquire_check(self) -> None:
        """Raise GuardRunning when a guard holds the lock; take and drop it otherwise."""
        self.acquire()
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder_pid(where: GuardPlace) -> int | None:
    """The pid written by the guard holding the lock (None when no guard holds it)."""
    try:
        fd = os.open(where.lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 200).decode(errors="replace")
            first = text.split("\n", 1)[0].strip()
            return int(first) if first.isdigit() else None
        return None  # we got the lock: nobody holds it
    finally:
        os.close(fd)


def running_text(where: GuardPlace) -> str:
    pid = holder_pid(where)
    who = f"pid {pid}" if pid else "pid unknown"
    return f"a guard already runs for this state dir ({who}, socket {where.socket})"


def clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead guard; refuse a path that is not our socket."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        what = "not a socket" if not stat.S_ISSOCK(info.st_mode) else f"owned by uid {info.st_uid}"
        raise UsageError(f"{path} exists and is not a qwentui guard socket ({what}); move it away and retry")
    path.unlink()
