"""Engine output → masked lines in a rotating 0600 log file and a bounded in-memory tail.

SGLang prints `server_args={..., 'api_key': '<clear>', ...}` at start-up; nothing that
reaches the file, the tail or the UI may carry the key.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path
from typing import Iterable

from qwentui.config import mask_secret

# The kept-engine log relay reads the secret to mask from this variable (never argv).
RELAY_SECRETS_ENV = "_QWENTUI_RELAY_SECRETS"

_FIELD = re.compile(r"""((?:admin_)?api_key['"]?\s*[:=]\s*)(['"])((?:(?!\2).)+)\2""")
_BARE = re.compile(r"""((?:admin_)?api_key\s*=\s*)(?!None\b)([^\s'",)}]+)""")
_FLAG = re.compile(r"""(--(?:admin-)?api-key[ =])(?!None\b)(\S+)""")


class Masker:
    """Replaces known secrets and any api_key-looking field with a masked form."""

    MIN_LITERAL = 6  # shorter "keys" would mangle every line; the field patterns still catch them

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= self.MIN_LITERAL}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, mask_secret(secret))
        line = _FIELD.sub(lambda m: m.group(1) + m.group(2) + _mask_once(m.group(3)) + m.group(2), line)
        line = _BARE.sub(lambda m: m.group(1) + _mask_once(m.group(2)), line)
        return _FLAG.sub(lambda m: m.group(1) + _mask_once(m.group(2)), line)


def _mask_once(value: str) -> str:
    """Mask unless already masked (the known-secret pass may have run first)."""
    if value in ("None", "null") or "…(" in value or value == "****":
        return value
    return mask_secret(value)


class LineSplitter:
    """Bytes in, text lines out; tqdm's carriage-return updates count as lines."""

    MAX = 64 * 1024

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        parts = re.split(rb"\r\n|\r|\n", self._buf)
        self._buf = parts.pop()
        if len(self._buf) > self.MAX:
            parts.append(self._buf)
            self._buf = b""
        return [p.decode("utf-8", "replace") for p in parts if p.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, b""
        return [rest.decode("utf-8", "replace")] if rest.strip() else []


class LogSink:
    """Masks each line, keeps the last `tail` lines, appends to a rotating 0600 file.

    The file is best effort: a full disk or a read-only log dir must never stop an engine
    start or stop. The first failure closes the file and adds one notice to the tail
    (`error` says why); later lines are kept in memory only.
    """

    def __init__(self, path: Path | None, masker: Masker, *, tail: int = 1000,
                 max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> None:
        self.path = path
        self.masker = masker
        self.tail: deque[str] = deque(maxlen=tail)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self.error: str | None = None
        if path is not None:
            self._guarded(self._open)

    def _open(self) -> None:
        from qwentui import paths

        assert self.path is not None
        paths.ensure_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)

    def write(self, line: str) -> str:
        masked = self.masker(line.rstrip("\n"))
        self.tail.append(masked)
        if self._fd is not None:
            self._guarded(self._append, (masked + "\n").encode("utf-8", "replace"))
        return masked

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
            self._rotate()
        if self._fd is not None:
            os.write(self._fd, data)

    def _guarded(self, action, *args) -> None:
        try:
            action(*args)
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """Report once (in the tail, which the UI and serve show), then stop using the file."""
        self.close()
        if self.error is None:
            self.error = f"cannot write the engine log {self.path}: {exc.strerror or exc}"
            self.tail.append(f"=== qwentui: {self.error}; later lines are kept in memory only")

    def _rotate(self) -> None:
        assert self.path is not None and self._fd is not None
        self.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def lines(self) -> list[str]:
        return list(self.tail)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
