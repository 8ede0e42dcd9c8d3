"""`python -m qwentui.engine.relay LOGFILE`: keeps a kept (--keep-engine) engine's log going.

qwentui hands the engine's output pipe to this process when it exits without stopping the
engine; it masks secrets (from the environment, never argv) and appends to the rotating log
until the engine closes the pipe.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from qwentui.engine.logsink import RELAY_SECRETS_ENV, LineSplitter, LogSink, Masker


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m qwentui.engine.relay LOGFILE", file=sys.stderr)
        return 2
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    sink = LogSink(Path(argv[0]), Masker([os.environ.pop(RELAY_SECRETS_ENV, "")]))
    splitter = LineSplitter()
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        for line in splitter.feed(data):
            sink.write(line)
    for line in splitter.flush():
        sink.write(line)
    sink.write("=== qwentui relay: engine closed its output; it has exited")
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
