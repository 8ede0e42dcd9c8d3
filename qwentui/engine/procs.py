"""Process plumbing: spawn in a new session with PDEATHSIG, walk and kill process trees, ports."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import socket
import sys
from typing import Iterable, Sequence

import psutil

PR_SET_PDEATHSIG = 1


def _pdeathsig(parent: int):
    """preexec_fn: the child gets SIGKILL when the spawning thread dies (Linux)."""

    def setup() -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # parent died between fork and prctl
            os._exit(1)

    return setup


async def spawn(argv: Sequence[str], *, pdeathsig: bool = True,
                env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, int]:
    """Start `argv` in its own session/process group; stdout+stderr → one pipe.

    Returns the process and the pipe's read end (non-blocking), which the caller owns.
    Must run on the event loop's thread: PDEATHSIG fires when the forking *thread* exits.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
            start_new_session=True, env=child_env,
            preexec_fn=_pdeathsig(os.getpid()) if pdeathsig else None)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def descendants(pid: int) -> list[psutil.Process]:
    """`pid` and everything below it that is still alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def signal_each(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _bind_host(host: str) -> tuple[int, str]:
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), host


def port_free(host: str, port: int) -> bool:
    """True when a server could bind (host, port) now (SO_REUSEADDR, like uvicorn)."""
    family, addr = _bind_host(host)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_owner(port: int) -> str | None:
    """'pid 123 (python -m http.server)' for the process listening on `port`, if psutil can tell."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return f"pid {conn.pid} ({_describe(conn.pid)})"
    return None


def owns_listener(pids: Iterable[int], port: int) -> bool | None:
    """Whether one of `pids` listens on `port`; None when psutil cannot tell."""
    unknown = False
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        except (psutil.AccessDenied, OSError):
            unknown = True
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            return True
    return None if unknown else False


def _describe(pid: int) -> str:
    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.Error:
        return "unknown"
    from qwentui.engine.logsink import Masker

    text = " ".join(os.path.basename(cmd[0]) if i == 0 else w for i, w in enumerate(cmd)) if cmd else "?"
    text = Masker()(text)  # a kept engine's cmdline carries --api-key in clear
    return text if len(text) <= 80 else text[:77] + "..."


async def wait_port_free(host: str, port: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not port_free(host, port):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
