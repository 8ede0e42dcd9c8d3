"""Start a real detached guard (`qwentui --demo serve --detach`) for tests, and end it.

    with detached_guard(port, "--idle-timeout", "1m") as g:
        g.client.state()

The guard's output goes to its own log (never the test runner's stdout/stderr). On exit
the guard is asked to stop, then SIGKILLed if it is still there; its engine dies with it
(PR_SET_PDEATHSIG), and the fixture checks that nothing of it is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psutil

from qwentui.runtime.client import GuardClient
from qwentui.runtime.place import place


def qwentui(*argv: str, timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwentui", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


@dataclass
class GuardProc:
    pid: int
    port: int
    client: GuardClient

    def state(self) -> dict:
        return self.client.state()

    def engine_pids(self) -> list[int]:
        pid = self.state()["engine"]["pid"]
        if not pid:
            return []
        root = psutil.Process(pid)
        return [pid] + [c.pid for c in root.children(recursive=True)]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gone(pids) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def guard_pids() -> list[int]:
    """Our guards still alive (this test's state dir: the lock holder)."""
    from qwentui.runtime.place import holder_pid

    return [p for p in (holder_pid(place("sim")),) if p]


def start_guard(port: int, *extra: str, ready: bool = True) -> GuardProc:
    done = qwentui("--demo", "--port", str(port), "serve", "--detach", *extra)
    assert done.returncode == 0, done.stderr + done.stdout
    client = GuardClient(kind="sim")
    state = client.state()
    g = GuardProc(state["guard"]["pid"], port, client)
    if ready:
        wait_for(lambda: g.state()["engine"]["state"] == "ready", what="engine ready")
    return g


def end_guard(g: GuardProc | None) -> None:
    pids = []
    if g is not None:
        pids.append(g.pid)
        try:
            pids += g.engine_pids()
        except Exception:  # noqa: BLE001 - the guard may be gone already
            pass
        try:
            g.client.stop_guard()
        except Exception:  # noqa: BLE001
            pass
    for pid in guard_pids():
        pids.append(pid)
    deadline = time.monotonic() + 30
    while not gone(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def detached_guard(port: int, *extra: str, ready: bool = True) -> Iterator[GuardProc]:
    g = None
    try:
        g = start_guard(port, *extra, ready=ready)
        yield g
    finally:
        end_guard(g)


async def console_on_a_guard(args):
    """`console.build(args)` once a guard for them answers (the console attaches before its first paint)."""
    import asyncio

    from qwentui import cli
    from qwentui.commands import console
    from qwentui.runtime.detach import guard_argv, start_detached

    kind = cli.load_config(args).engine.kind
    await asyncio.to_thread(start_detached, guard_argv(args, kind), place(kind))
    return await console.build(args)
