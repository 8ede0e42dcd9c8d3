"""Waiting on a condition, the one way tests do it (never a bare sleep or pause)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable


async def wait_until(pilot: Any, predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Until `predicate()` is true; between checks let the app run (`pilot`) or the loop (None)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        if pilot is not None:
            await pilot.pause(0.02)
        else:
            await asyncio.sleep(0.02)


def poll_until(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.05) -> bool:
    """Blocking: True once `predicate()` is true, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
