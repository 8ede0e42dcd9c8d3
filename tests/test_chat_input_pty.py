"""Enter typed in the same burst as the text (one write() on a real pty) sends the whole line.

Pilot cannot show this race: it feeds keys one by one through the app's queue. A terminal
delivers a pasted or batched line plus Enter in one read, and a priority Enter binding used
to run before the queued characters reached the prompt.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a Linux pty")

LINES = [
    "What is a T4 GPU?", "Why is the sky blue? Answer in one line.", "hello", "2 + 2 = ?",
    "Summarise the plot of Hamlet in three sentences, please.", "ünïcödé ✓ works", "a",
    "List five prime numbers", "two  spaces  between", "What's the capital of France?",
    "x" * 70, "Tell me a joke about GPUs", "quote \"this\" and 'that'", "semi;colon|pipe&amp",
    "Explain KV cache in SGLang", "123456789012345678901234567890", "Is 0.1 + 0.2 == 0.3?",
    "last-but-two", "(parentheses) [brackets] {braces}", "the very last line",
]


def _results(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _wait_for(path: Path, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _results(path)
        if len(got) >= count:
            return got
        time.sleep(0.02)
    return _results(path)


@pytest.fixture
def pty_app(tmp_path):
    out = tmp_path / "submitted.jsonl"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="80", LINES="24")
    env.pop("TEXTUAL", None)

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("pty_chat_app.py")), str(out)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    stop = threading.Event()

    def drain() -> None:  # the app blocks if nobody reads its screen updates
        while not stop.is_set():
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield master, out
    finally:
        stop.set()
        proc.kill()
        proc.wait(timeout=10)
        os.close(master)


def test_enter_in_the_same_write_sends_the_whole_line(pty_app):
    master, out = pty_app
    assert _wait_for(out, 1, 30.0)[:1] == ["ready"], "the app did not start"
    for n, line in enumerate(LINES, start=1):
        os.write(master, line.encode() + b"\r")  # text and Enter in ONE write, as tmux send-keys does
        got = _wait_for(out, n + 1, 10.0)
        assert got[1:] == LINES[:n], f"line {n} arrived as {got[n:]!r}"
    time.sleep(0.3)
    assert _results(out)[1:] == LINES  # nothing extra (no leftover text sent later)


def test_newline_and_enter_in_one_write_keep_their_order(pty_app):
    master, out = pty_app
    assert _wait_for(out, 1, 30.0)[:1] == ["ready"], "the app did not start"
    os.write(master, b"first line\nsecond line\r")  # Ctrl+J (LF) adds a line, CR sends: one burst
    assert _wait_for(out, 2, 10.0)[1:] == ["first line\nsecond line"]
