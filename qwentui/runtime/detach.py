"""Start a guard in the background and wait until it answers.

The guard runs in a new session with stdin on /dev/null and stdout/stderr appended to its
own 0600 log. A throw-away `sh` forks it and exits, so the guard is nobody's child: the
console (or the shell) that started it can die in any way without touching it, and no
zombie is left behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from qwentui import paths
from qwentui.errors import QwentuiError
from qwentui.runtime.client import GuardClient
from qwentui.runtime.place import GuardPlace

START_TIMEOUT_S = 30.0


def serve_argv(args: argparse.Namespace, kind: str, *serve: str) -> list[str]:
    """`python -m qwentui [--config C] --engine K [--port P] serve SERVE... [serve flags]` for
    these parsed args: what a detached guard or a systemd unit runs."""
    from qwentui.commands.flags import ENGINE_FLAGS, IDLE_FLAGS, SERVE_FLAGS

    argv = [sys.executable, "-m", "qwentui"]
    if getattr(args, "config", None):
        argv += ["--config", str(Path(args.config).resolve())]
    argv += ["--engine", kind, *_given(args, ENGINE_FLAGS[2:]), "serve", *serve]
    if getattr(args, "preset", None):
        argv += ["--preset", args.preset]
    return argv + _given(args, (*SERVE_FLAGS, *IDLE_FLAGS))


def _given(args: argparse.Namespace, flags) -> list[str]:
    """The config flags given in `args`, as command-line words again."""
    out: list[str] = []
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if flag.switch is not None:
            out += [flag.option] if value else []
        elif value is not None:
            out += [flag.option, str(value)]
    return out


def guard_argv(args: argparse.Namespace, kind: str) -> list[str]:
    return serve_argv(args, kind, "--detached-child")


def start_detached(argv: list[str], where: GuardPlace, *, timeout: float = START_TIMEOUT_S) -> dict:
    """Start the guard and return its first `/state`; QwentuiError (with its log's tail) if it
    exits or stays silent."""
    return wait_answering(where, spawn(argv, where), timeout=timeout)


def spawn(argv: list[str], where: GuardPlace) -> int:
    """Launch the guard (returns at once); the result is where its log starts, for `wait_answering`."""
    paths.ensure_dir(where.log.parent)
    log_fd = os.open(where.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(log_fd, 0o600)
    start = os.lseek(log_fd, 0, os.SEEK_END)
    try:
        subprocess.run(["/bin/sh", "-c", 'exec "$@" &', "sh", *argv], stdin=subprocess.DEVNULL,
                       stdout=log_fd, stderr=log_fd, start_new_session=True, close_fds=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise QwentuiError(f"cannot start a guard: {exc}") from exc
    finally:
        os.close(log_fd)
    return start


def wait_answering(where: GuardPlace, log_from: int, *, timeout: float = START_TIMEOUT_S) -> dict:
    """Until the guard started by `spawn` answers: its `/state`, or QwentuiError with why not."""
    client = GuardClient(where)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.alive():
            return client.state()
        failure = _failed_start(where.log, log_from)
        if failure:
            raise QwentuiError(f"the guard did not start: {failure}", hint=f"its log: {where.log}")
        time.sleep(0.1)
    raise QwentuiError(f"the guard did not answer within {timeout:g}s", hint=f"its log: {where.log}")


def _failed_start(log: Path, offset: int) -> str | None:
    """The guard's error line when it already gave up (it prints 'qwentui: error: ...')."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read(20000).decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("qwentui: error: "):
            return line.removeprefix("qwentui: error: ")
    return None
