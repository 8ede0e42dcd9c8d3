"""Batch input parsing and durable output (used by `qwentui.batch.runner`).

Input: JSON Lines, one request per line, `{"id": …, "prompt": "…"}` or
`{"id": …, "messages": [...]}` plus optional per-line parameters. A line that cannot
be used becomes an error item (written to OUT as an error line naming the line);
duplicate ids and an input without requests are errors for the whole job.

Output: one JSON line per input, appended as results finish, flushed and fsynced in
small groups so a kill loses at most the last group (and `--resume` redoes those).
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwentui.errors import QwentuiError, UsageError
from qwentui.paths import write_atomic

# Per-line parameters and their checks; anything else on a line is an error (typos
# such as "max_token" would otherwise be silently ignored by the engine).
_NUMBER = (int, float)
PARAMS: dict[str, tuple[type | tuple[type, ...], Callable[[Any], bool], str]] = {
    "max_tokens": (int, lambda v: v > 0, "a positive integer"),
    "temperature": (_NUMBER, lambda v: 0 <= v <= 2, "a number 0-2"),
    "top_p": (_NUMBER, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "top_k": (int, lambda v: v == -1 or v > 0, "a positive integer or -1"),
    "min_p": (_NUMBER, lambda v: 0 <= v <= 1, "a number 0-1"),
    "presence_penalty": (_NUMBER, lambda v: -2 <= v <= 2, "a number -2..2"),
    "frequency_penalty": (_NUMBER, lambda v: -2 <= v <= 2, "a number -2..2"),
    "repetition_penalty": (_NUMBER, lambda v: 0 < v <= 2, "a number in (0, 2]"),
    "seed": (int, lambda v: True, "an integer"),
    "stop": ((str, list), lambda v: isinstance(v, str) or all(isinstance(s, str) for s in v),
             "a string or a list of strings"),
    "thinking": (bool, lambda v: True, "true or false"),
}
KNOWN_KEYS = ("id", "prompt", "messages", "system", *PARAMS)
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class BatchItem:
    id: Any  # str or int from the input; the line number when absent
    line: int
    messages: tuple = ()
    params: dict = field(default_factory=dict)  # per-line overrides, validated
    error: str | None = None  # set when the line cannot be sent
    implicit: bool = False  # no usable "id" on the line: `id` was chosen by `number_implicit_ids`

    @property
    def key(self) -> str:
        return id_key(self.id)


def id_key(value: Any) -> str:
    """Canonical form used to compare ids (1 and "1" are different ids)."""
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ input


def read_input(path: str | Path) -> list[BatchItem]:
    """All items of INPUT. Raises UsageError: missing/unreadable, no requests, duplicate ids."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"input is a directory, not a JSONL file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    items = parse_bytes(raw)
    if not items:
        raise UsageError(f"{path} has no requests (empty input); expected JSON lines like "
                         '{"id": 1, "prompt": "..."}')
    check_unique(items, path)
    return items


def parse_bytes(raw: bytes) -> list[BatchItem]:
    """INPUT's bytes → items. Lines end at b"\n" only (JSON strings may hold U+2028, U+0085 ...);
    a line that is not UTF-8 is an error item, never sent with replacement characters."""
    items = []
    for number, chunk in enumerate(raw.split(b"\n"), 1):
        if number == 1 and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[len(codecs.BOM_UTF8):]
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            items.append(BatchItem(id=number, line=number, implicit=True, error=(
                f"line {number}: not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1})")))
            continue
        if text.strip():
            items.append(parse_line(text, number))
    return number_implicit_ids(items)


def parse_lines(lines: Iterable[str]) -> list[BatchItem]:
    """One item per non-blank line; line numbers start at 1."""
    items = [parse_line(text, number) for number, text in enumerate(lines, 1) if text.strip()]
    return number_implicit_ids(items)


def number_implicit_ids(items: list[BatchItem]) -> list[BatchItem]:
    """A line without an id gets its line number, or "line-N" when an explicit id already
    is that number: implicit ids never collide with explicit ones (same input, same ids)."""
    taken = {item.key for item in items if not item.implicit}
    out = []
    for item in items:
        if item.implicit:
            ident: Any = item.line
            suffix = 0
            while id_key(ident) in taken:
                suffix += 1
                ident = f"line-{item.line}" + (f"-{suffix}" if suffix > 1 else "")
            taken.add(id_key(ident))
            item = dataclasses.replace(item, id=ident)
        out.append(item)
    return out


def check_unique(items: list[BatchItem], path: Path | str) -> None:
    seen: dict[str, int] = {}
    for item in items:
        first = seen.setdefault(item.key, item.line)
        if first != item.line:
            raise UsageError(f"{path}:{item.line}: duplicate id {item.key} (first used on line {first}); "
                             "ids must be unique so that outputs and --resume can match them")


def parse_line(text: str, number: int) -> BatchItem:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return BatchItem(id=number, line=number, implicit=True,
                         error=f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return BatchItem(id=number, line=number, implicit=True,
                         error=f"line {number}: expected a JSON object, got {type(obj).__name__}")
    implicit = "id" not in obj
    ident = obj.get("id", number)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        return BatchItem(id=number, line=number, implicit=True,
                         error=f"line {number}: id must be a string or an integer")
    try:
        messages = _messages(obj, number)
        params = _params(obj, number)
    except ValueError as exc:
        return BatchItem(id=ident, line=number, implicit=implicit, error=str(exc))
    return BatchItem(id=ident, line=number, messages=messages, params=params, implicit=implicit)


def _messages(obj: dict, number: int) -> tuple:
    unknown = [k for k in obj if k not in KNOWN_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], KNOWN_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"line {number}: unknown key '{unknown[0]}'{hint}")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt == has_messages:
        raise ValueError(f"line {number}: needs exactly one of \"prompt\" or \"messages\"")
    if has_prompt:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise ValueError(f"line {number}: \"prompt\" must be a non-empty string")
        messages = [{"role": "user", "content": obj["prompt"]}]
    else:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"line {number}: \"messages\" must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
                raise ValueError(f"line {number}: messages[{i}] needs a role ({'/'.join(ROLES)}) and content")
    if "system" in obj:
        if not isinstance(obj["system"], str):
            raise ValueError(f"line {number}: \"system\" must be a string")
        messages = [{"role": "system", "content": obj["system"]}, *messages]
    return tuple(messages)


def _params(obj: dict, number: int) -> dict:
    params = {}
    for name, (kind, ok, want) in PARAMS.items():
        if name not in obj or obj[name] is None:
            continue
        value = obj[name]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind) or not ok(value):
            raise ValueError(f"line {number}: {name} must be {want}, got {json.dumps(value)}")
        params[name] = value
    return params


# ------------------------------------------------------------------ output


def load_for_resume(path: Path) -> tuple[set[str], list[bytes], bool]:
    """Ids already finished in OUT, the lines to keep, and whether OUT must be rewritten.

    Finished = an answer, or an error that a rerun cannot fix (a bad input line).
    Retryable error lines (engine down, timeouts) are dropped so that --resume redoes
    them and OUT keeps one line per id; so is a last line cut short by a kill.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set(), [], False
    except OSError as exc:
        raise UsageError(f"cannot read {path} for --resume: {exc.strerror or exc}") from None
    done: set[str] = set()
    keep: list[bytes] = []
    complete = data.rfind(b"\n") + 1
    rewrite = complete != len(data)
    for line in data[:complete].splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or "id" not in obj or id_key(obj["id"]) in done:
            rewrite = True
            continue
        if obj.get("error") and obj.get("retryable"):
            rewrite = True
            continue
        done.add(id_key(obj["id"]))
        keep.append(line)
    return done, keep, rewrite


def _replace_atomically(path: Path, lines: list[bytes]) -> None:
    write_atomic(path, b"".join(line + b"\n" for line in lines))


class OutputLock:
    """One batch per OUT: an flock on a hidden `.OUT.lock` beside it (a sidecar, because
    --resume replaces OUT itself). The kernel drops the lock when its holder dies, even by
    kill -9, so a stale file never blocks; the holder's pid is written into it for the refusal."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.with_name(f".{out.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.out.exists() and not self.out.is_file():
            return  # /dev/stdout, a FIFO: nothing two batches could share by name
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise QwentuiError(f"{self.out} is in use by another qwentui batch (pid {holder}); wait "
                                   "for it to finish or write to another file") from None
            if self._same_file(fd):
                self._fd = fd
            else:  # its holder finished and removed it between our open and our lock: again
                os.close(fd)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then retries on a new file
            os.close(fd)


class OutputError(QwentuiError):
    """OUT cannot be written any more (a full disk): the batch stops, what is on disk stays."""


class OutputWriter:
    """Appends JSON lines to OUT; flush+fsync every `every` lines or `interval` seconds.

    Without `resume` an existing non-empty OUT is refused unless `overwrite`, so that a
    re-run of the same command cannot wipe hours of results. The first failed write (a full
    disk) sets `error` and raises OutputError; later writes raise it again at once.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False,
                 every: int = 16, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.every, self.interval, self._clock = every, interval, clock
        self.done: set[str] = set()
        self._lock = OutputLock(self.path)
        self._fh = self._locked_open(resume, overwrite)
        self._pending = 0
        self._last_sync = clock()
        self.written = 0
        self.error: str | None = None

    def _locked_open(self, resume: bool, overwrite: bool):
        if self.path.is_dir():
            raise UsageError(f"output is a directory: {self.path}")
        try:
            self._lock.acquire()
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        try:
            return self._open(resume, overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, resume: bool, overwrite: bool):
        try:
            if resume:
                self.done, keep, rewrite = load_for_resume(self.path)
                if rewrite:
                    _replace_atomically(self.path, keep)
                return open(self.path, "ab")
            if not overwrite and self.path.exists() and self.path.stat().st_size > 0:
                raise UsageError(f"{self.path} already has results; use --resume to continue it "
                                 "or --overwrite to start over")
            return open(self.path, "wb")
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def write(self, record: dict) -> None:
        if self.error is not None:
            raise OutputError(self.error)
        try:
            self._fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        except OSError as exc:
            self._failed(exc)
        self.written += 1
        self._pending += 1
        if self._pending >= self.every or self._clock() - self._last_sync >= self.interval:
            self.sync()

    def sync(self) -> None:
        if self._pending == 0 or self._fh.closed or self.error is not None:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self._failed(exc)
        self._pending = 0
        self._last_sync = self._clock()

    def _failed(self, exc: OSError) -> None:
        self.error = (f"cannot write {self.path}: {exc.strerror or exc}; the answers before this one are "
                      "saved: make room, then continue with --resume")
        raise OutputError(self.error) from None

    def close(self) -> None:
        """Sync and close; never raises (a failure is in `error`) and always unlocks OUT."""
        try:
            if not self._fh.closed:
                self.sync()
        except OutputError:
            pass
        finally:
            try:
                self._fh.close()
            except OSError:
                pass  # the buffered tail could not be written: `error` says so (a cut line is dropped by --resume)
            self._lock.release()
