"""A hard deadline for the console's teardown: a dead terminal must never hold the process.

After a hang-up Textual's writer thread can be gone while teardown still queues output
to it (issue 16 #1), so once the console starts to exit a daemon thread ends the process
with `os._exit` after `EXIT_DEADLINE_S`. Nothing of value is lost by then: the engine,
watchdog and ledger live in the guard.
"""

from __future__ import annotations

import os
import sys
import threading

EXIT_DEADLINE_S = 5.0

_armed = threading.Event()


def arm_exit_deadline(seconds: float = EXIT_DEADLINE_S, code: int = 0) -> None:
    """Start the countdown once (later calls do nothing)."""
    if _armed.is_set():
        return
    _armed.set()

    def expire() -> None:
        if not _done.wait(seconds):
            try:
                sys.stderr.write("qwentui: the terminal is gone; exiting without waiting for it\n")
            except (OSError, ValueError):
                pass
            os._exit(code)

    threading.Thread(target=expire, name="qwentui-exit-deadline", daemon=True).start()


_done = threading.Event()


def exited_cleanly() -> None:
    """The process is about to end by itself: no need for the deadline."""
    _done.set()
