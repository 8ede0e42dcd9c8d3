"""Batch input parsing and durable output (used by `qwentui.batch.runner`).

Input: JSON Lines, one request per line, `{"id": …, "prompt": "…"}` or
`{"id": …, "messages": [...]}` plus optional per-line parameters. A line that cannot
be used becomes an error item (written to OUT as an error line naming the line);
duplicate ids and an input without requests are errors for the whole job.

Output: one JSON line per input, appended as results finish, flushed and fsynced in
small groups so a kill loses at most the last group (and `--resume` redoes those).
"""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwentui.errors import UsageError
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
    items = parse_lines(raw.decode("utf-8", errors="replace").splitlines())
    if not items:
        raise UsageError(f"{path} has no requests (empty input); expected JSON lines like "
                         '{"id": 1, "prompt": "..."}')
    check_unique(items, path)
    return items


def parse_lines(lines: Iterable[str]) -> list[BatchItem]:
    """One item per non-blank line; line numbers start at 1."""
    return [parse_line(text, number) for number, text in enumerate(lines, 1) if text.strip()]


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
        return BatchItem(id=number, line=number, error=f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return BatchItem(id=number, line=number, error=f"line {number}: expected a JSON object, got {type(obj).__name__}")
    ident = obj.get("id", number)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        return BatchItem(id=number, line=number, error=f"line {number}: id must be a string or an integer")
    try:
        messages = _messages(obj, number)
        params = _params(obj, number)
    except ValueError as exc:
        return BatchItem(id=ident, line=number, error=str(exc))
    return BatchItem(id=ident, line=number, messages=messages, params=params)


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


class OutputWriter:
    """Appends JSON lines to OUT; flush+fsync every `every` lines or `interval` seconds.

    Without `resume` an existing non-empty OUT is refused unless `overwrite`, so that a
    re-run of the same command cannot wipe hours of results.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False,
                 every: int = 16, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.every, self.interval, self._clock = every, interval, clock
        self.done: set[str] = set()
        self._fh = self._open(resume, overwrite)
        self._pending = 0
        self._last_sync = clock()
        self.written = 0

    def _open(self, resume: bool, overwrite: bool):
        if self.path.is_dir():
            raise UsageError(f"output is a directory: {self.path}")
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
        self._fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self.written += 1
        self._pending += 1
        if self._pending >= self.every or self._clock() - self._last_sync >= self.interval:
            self.sync()

    def sync(self) -> None:
        if self._pending == 0 or self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._pending = 0
        self._last_sync = self._clock()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()
