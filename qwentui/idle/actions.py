"""What the idle watchdog does when it fires: stop the engine, or stop it and power off.

Order for `poweroff`: stop the engine → close the ledger (so the session row is final)
→ optional last confirmation (the app's cancellable countdown) → run
`idle.poweroff_command` (argv, `$VARS` expanded; `shutdown -h now` if the first program
is not installed). `dry_run` prints the command instead. The action runs at most once
per `ActionRunner`; a second `run()` returns the first result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from qwentui.errors import QwentuiError, UsageError

FALLBACK_COMMAND = ("shutdown", "-h", "now")
_VAR_RE = re.compile(r"\$([A-Za-z_]\w*)|\$\{([A-Za-z_]\w*)\}")  # not $0, $1: shell positionals
_DENIED = ("interactive authentication required", "access denied", "must be root",
           "permission denied", "operation not permitted", "not authorized", "authentication is required")


@dataclass(frozen=True)
class ActionResult:
    action: str  # "stop-engine" | "poweroff"
    reason: str  # "idle" | "budget" | ...
    ok: bool  # False when the engine did not stop or the poweroff command failed
    message: str  # one line for the user
    engine_stopped: bool = False
    ledger_closed: bool = False
    command: tuple[str, ...] = ()  # the argv run (or printed, on a dry run)
    ran: bool = False  # the poweroff command was executed
    dry_run: bool = False
    cancelled: bool = False
    error: str | None = None
    hint: str | None = None


def expand_command(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Expand `$VAR` / `${VAR}` in each argument; an unset variable is an error, not a literal."""
    env = os.environ if environ is None else environ
    if not argv:
        raise UsageError("idle.poweroff_command is empty")

    def one(arg: str) -> str:
        def sub(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name not in env:
                raise UsageError(f"idle.poweroff_command uses ${name}, which is not set in the environment")
            return env[name]
        return _VAR_RE.sub(sub, arg)

    return [one(a) for a in argv]


def resolve_command(argv: Sequence[str], environ: Mapping[str, str] | None = None,
                    which: Callable[[str], str | None] = shutil.which) -> tuple[list[str], str]:
    """The argv that will run, and a note when it falls back; UsageError when nothing is runnable."""
    command = expand_command(argv, environ)
    if which(command[0]):
        return command, ""
    if which(FALLBACK_COMMAND[0]):
        return list(FALLBACK_COMMAND), f"{command[0]} not found; using {' '.join(FALLBACK_COMMAND)}"
    raise UsageError(f"poweroff command not found: {command[0]} (and no {FALLBACK_COMMAND[0]} either)")


def check_poweroff(argv: Sequence[str], environ: Mapping[str, str] | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> str:
    """Before a run that may power off (batch --then poweroff, serve's idle poweroff):
    UsageError when no command can run ($VAR unset, not on PATH), so nothing starts that
    would leave the box up at the end; a warning line when it would fall back, else ""."""
    _, note = resolve_command(argv, environ, which)
    return f"warning: idle.poweroff_command: {note}" if note else ""


def describe_stop_path(argv: Sequence[str], environ: Mapping[str, str] | None = None,
                       which: Callable[[str], str | None] = shutil.which) -> str:
    """One line for `doctor`: which command powers the box off, or why none can."""
    try:
        command, note = resolve_command(argv, environ, which)
    except UsageError as exc:
        return f"poweroff: unavailable: {exc.message}"
    where = which(command[0])
    return f"poweroff: {' '.join(command)} ({where})" + (f"; {note}" if note else "")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _denied_hint(output: str) -> str | None:
    low = output.lower()
    if not any(word in low for word in _DENIED):
        return None
    who = "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "a non-root user"
    return (f"qwentui runs as {who} and may not power off: run it as root, allow it with a polkit "
            "rule or sudoers entry, or set idle.poweroff_command to your provider's stop command")


class ActionRunner:
    """Runs the idle/budget action exactly once."""

    def __init__(self, supervisor: Any, *, action: str = "stop-engine",
                 poweroff_command: Sequence[str] = ("systemctl", "poweroff"), dry_run: bool = False,
                 close_ledger: Callable[[str], Any] | None = None,
                 confirm: Callable[[Sequence[str]], Awaitable[bool]] | None = None,
                 environ: Mapping[str, str] | None = None, print_fn: Callable[[str], Any] = print,
                 which: Callable[[str], str | None] = shutil.which, command_timeout: float = 60.0) -> None:
        self.supervisor, self.action = supervisor, action
        self.poweroff_command, self.dry_run = tuple(poweroff_command), dry_run
        self._close_ledger, self._confirm = close_ledger, confirm
        self._environ, self._print, self._which = environ, print_fn, which
        self._command_timeout = command_timeout
        self._task: asyncio.Task[ActionResult] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    async def run(self, reason: str = "idle") -> ActionResult:
        """Stop the engine (and power off); later calls return the first call's result."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run(reason))
        return await asyncio.shield(self._task)

    async def _run(self, reason: str) -> ActionResult:
        base = {"action": self.action, "reason": reason, "dry_run": self.dry_run}
        stop_error = await self._stop_engine(reason)
        ledger_error = await self._close(reason)
        done = {**base, "engine_stopped": stop_error is None, "ledger_closed": ledger_error is None}
        if self.action != "poweroff":
            if stop_error:
                return ActionResult(ok=False, message=f"could not stop the engine: {stop_error}",
                                    error=stop_error, **done)
            return ActionResult(ok=True, message=f"engine stopped ({reason})", **done)
        result = await self._poweroff(done)
        if stop_error and result.ok:  # the box goes down anyway; still say what failed
            return dataclasses.replace(result, error=stop_error,
                                       message=f"{result.message}; engine stop failed: {stop_error}")
        return result

    async def _stop_engine(self, reason: str) -> str | None:
        if self.supervisor is None:
            return None
        try:
            await self.supervisor.stop(reason)
        except QwentuiError as exc:
            return exc.message
        except OSError as exc:
            return str(exc)
        return None

    async def _close(self, reason: str) -> str | None:
        if self._close_ledger is None:
            return None
        try:
            await _maybe_await(self._close_ledger(reason))
        except (QwentuiError, OSError, ValueError, RuntimeError) as exc:
            return f"closing the ledger failed: {exc}"
        return None

    async def _poweroff(self, done: dict) -> ActionResult:
        try:
            command, note = resolve_command(self.poweroff_command, self._environ, self._which)
        except UsageError as exc:
            return _failed(done, f"cannot power off: {exc.message}")
        prefix = f"{note}; " if note else ""
        shown = " ".join(command)
        if self.dry_run:
            self._print(f"dry run: would power off with: {shown}")
            return ActionResult(ok=True, message=f"{prefix}dry run: would run {shown}",
                                command=tuple(command), **done)
        if self._confirm is not None and not await self._confirm(command):
            return ActionResult(ok=True, cancelled=True, command=tuple(command),
                                message="poweroff cancelled; engine stopped", **done)
        result = await self._execute(command, prefix, done)
        if note and not result.ok:  # a failed fallback still says why it was not the configured one
            result = dataclasses.replace(result, message=f"{result.message} ({note})")
        return result

    async def _execute(self, command: list[str], prefix: str, done: dict) -> ActionResult:
        shown = " ".join(command)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), self._command_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return _failed(done, f"{shown} did not finish within {self._command_timeout:g}s",
                           command=tuple(command), ran=True)
        except OSError as exc:
            return _failed(done, f"cannot run {shown}: {exc.strerror or exc}", command=tuple(command),
                           hint=_denied_hint(str(exc)))
        text = out.decode("utf-8", "replace").strip()
        if proc.returncode == 0:
            return ActionResult(ok=True, message=f"{prefix}power off requested: {shown}",
                                command=tuple(command), ran=True, **done)
        last = text.splitlines()[-1] if text else "no output"
        return _failed(done, f"{shown} failed (exit {proc.returncode}): {last}", command=tuple(command),
                       ran=True, hint=_denied_hint(text))


def _failed(done: dict, error: str, **extra: Any) -> ActionResult:
    """A failed poweroff; the message says first whether the engine is stopped."""
    engine = "engine stopped" if done["engine_stopped"] else "engine stop failed too"
    return ActionResult(ok=False, message=f"{engine}; {error}", error=error, **done, **extra)
