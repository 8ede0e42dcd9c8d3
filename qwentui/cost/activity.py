"""The activity record the what-if replay reads: busy intervals and engine cold starts.

`ActivityRecorder` is fed what the runtime already has each tick (the idle watchdog's
status, the engine's status) and writes coalesced intervals to the ledger. Busy means:
a console chat in flight, a batch running, engine requests running or queued beyond
qwentui's own, or the engine's counters moving (the watchdog's "last activity"). Gaps
shorter than `gap` seconds are merged, so one conversation is one interval, not one
row per sample. No I/O of its own besides the ledger calls; all times are wall seconds.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from qwentui.cost.ledger import WORKER_SOURCE
from qwentui.errors import QwentuiError

log = logging.getLogger(__name__)

COALESCE_S = 5.0
BOOT_WINDOW_S = 900.0  # an engine launched this soon after boot: the box was started for it
NOT_USE = ("", "engine start", "enabled")  # watchdog touches that are not someone using the engine


def _state(obj: Any) -> str:
    state = getattr(obj, "state", "")
    return str(getattr(state, "value", state)).lower()


class ActivityRecorder:
    """Coalesces busy moments into intervals and records engine starts in the ledger."""

    def __init__(self, ledger: Callable[[], Any], *, gap: float = COALESCE_S,
                 boot_time: Callable[[], float] | None = None) -> None:
        self._ledger = ledger  # a callable: the runtime may reopen its ledger
        self._boot_time = boot_time
        self.gap = gap
        self.current: list[float] | None = None  # [start, end] not yet written
        self._source = ""
        self._seen = float("-inf")  # the last activity moment already counted
        self._launch: tuple[float, float] | None = None  # (wall, engine clock) at STARTING
        self.errors = 0

    # -- inputs ------------------------------------------------------------------------

    def busy(self, at: float, source: str = "") -> None:
        """Someone used the engine at `at` (wall seconds)."""
        self._seen = max(self._seen, at)
        cur = self.current
        if cur is not None and at - cur[1] < self.gap:
            cur[0], cur[1] = min(cur[0], at), max(cur[1], at)
            return
        self._write()
        self.current, self._source = [at, at], source

    def observe(self, now: float, idle: Any) -> None:
        """One runtime tick: the watchdog's `IdleStatus` (or the parked one)."""
        if _state(idle) == "active" and getattr(idle, "reason_alive", ""):
            self.busy(now, _source_of(idle.reason_alive))
        elif getattr(idle, "last_activity", "") not in NOT_USE:
            last = now - float(getattr(idle, "seconds_idle", 0.0) or 0.0)
            if last > self._seen + 1e-3:
                self.busy(last, _source_of(idle.last_activity))
        self.close_quiet(now)

    def engine(self, status: Any, now: float) -> None:
        """An engine status change: STARTING remembers the launch, READY records the cold start."""
        state = _state(status)
        if state == "starting" and self._launch is None:
            started = getattr(status, "started_at", None)
            self._launch = (now, started if started is not None else now)
        elif state == "ready" and self._launch is not None:
            wall, started = self._launch
            self._launch = None
            ready = getattr(status, "ready_at", None)
            cold = (ready - started) if ready is not None and ready >= started else max(0.0, now - wall)
            self._call("add_engine_start", wall, wall + cold, boot_s=self._boot_s(wall),
                       kind=getattr(status, "kind", "sglang") or "sglang")
        elif state in ("stopped", "crashed"):
            self._launch = None

    def close_quiet(self, now: float) -> None:
        """Write the open interval once it has been quiet for `gap`."""
        if self.current is not None and now - self.current[1] >= self.gap:
            self._write()

    def flush(self) -> None:
        """Write what is open (the runtime is closing or the engine stopped)."""
        self._write()

    # -- internals ---------------------------------------------------------------------

    def _boot_s(self, launch: float) -> float | None:
        """Boot → launch when the box came up for this engine (powered off before), else None."""
        if self._boot_time is None:
            return None
        try:
            since = launch - self._boot_time()
        except (OSError, RuntimeError):
            return None
        return since if 0 <= since <= BOOT_WINDOW_S else None

    def _write(self) -> None:
        cur, self.current = self.current, None
        if cur is not None:
            self._call("add_activity", cur[0], cur[1], self._source)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        ledger = self._ledger()
        if ledger is None:
            return
        try:
            getattr(ledger, name)(*args, **kwargs)
        except (QwentuiError, ValueError) as exc:  # never let the record stop the runtime
            self.errors += 1
            log.warning("activity not recorded: %s", exc)


def _source_of(reason: str) -> str:
    text = reason.lower()
    for word, source in (("console", "console"), ("batch", "batch"), ("api", "api")):
        if word in text:
            return source
    return text[:40]


class WorkerActivity:
    """A fleet's workers' busy intervals: one `ActivityRecorder` per worker, source "worker URL".

    A worker is busy on a tick when it has requests running or queued, or when its request or
    token counters moved since the previous tick (then the work happened at most one tick ago:
    the interval is stretched to this tick). Ticks come from the fleet's own scrapes, so the
    coalescing gap is at least one and a half ticks: a busy stretch stays one interval.
    A worker that does not answer is not busy (the gateway routes around it)."""

    def __init__(self, ledger: Callable[[], Any], workers: list[str], *, tick: float) -> None:
        gap = max(COALESCE_S, 1.5 * tick)
        self.recorders = {url: ActivityRecorder(ledger, gap=gap) for url in workers}
        self.source = {url: WORKER_SOURCE + url for url in workers}
        self._counts: dict[str, tuple] = {}

    def observe(self, snapshot: Any) -> None:
        """One fleet scrape (a `FleetSnapshot`): rows with running, queued and counters."""
        now = float(snapshot.at)
        for row in snapshot.rows:
            rec = self.recorders.get(row.url)
            if rec is None:
                continue
            if self._busy(row):
                rec.busy(now, self.source[row.url])
            rec.close_quiet(now)

    def flush(self) -> None:
        for rec in self.recorders.values():
            rec.flush()

    def _busy(self, row: Any) -> bool:
        if not getattr(row, "reachable", False):
            return False
        counts = (row.requests_total, row.prompt_tokens_total, row.generation_tokens_total)
        before = self._counts.get(row.url)
        self._counts[row.url] = counts
        moved = before is not None and counts != before
        return moved or _number(row.running) + _number(row.queued) > 0


def _number(value: Any) -> float:
    """A metric that may be NA (the engine did not export it) as a number; NA is 0."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
