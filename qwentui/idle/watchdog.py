"""Idle watchdog: a pure state machine that decides when nobody is using the engine.

    ACTIVE ─(last activity ends)→ IDLE ─(last warn_before)→ WARNING ─(deadline)→ ACTING → DONE
                                  SNOOZED (idle, deadline pushed out by snooze)    DISABLED

No I/O and no sleeping: callers feed events (console requests, engine metrics samples,
batch running, budget reached) and call `tick()`, which reads the injected clock. The
idle timer starts when the *last* activity ends, never when a request starts.

Activity: a console chat in flight, a batch job running, engine `running + queued`
beyond qwentui's own requests, or engine request counters growing beyond what qwentui
itself caused (its console chats: reported, then subtracted). SGLang 0.5.23's `/health`
runs a 1-token generation with `log_metrics=False` (srt/entrypoints/http_server.py:
health_generate): it never moves the request or token counters, only, for a moment, the
running gauge; so a health probe (`own_started`/`own_finished`) is allowed for in the
gauges and credits nothing against the counters. (The warm-up generate does count, but
it finishes before the baseline that `rearm` takes.) SGLang refreshes its gauges only
every ~30 s when idle, so a gauge may still show an own request that already finished:
while the gauge has not changed since, own requests finished within `gauge_stale`
seconds are allowed for. The counters remain the reliable external signal.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from qwentui.errors import UsageError

ACTIONS = ("stop-engine", "poweroff")


class IdleState(str, Enum):
    ACTIVE = "active"
    IDLE = "idle"
    SNOOZED = "snoozed"
    WARNING = "warning"
    ACTING = "acting"
    DONE = "done"
    DISABLED = "disabled"


@dataclass(frozen=True)
class MetricsSample:
    """The engine metrics the watchdog reads; counters are None when not exposed."""

    running: float = 0
    queued: float = 0
    requests_total: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None

    @classmethod
    def of(cls, metrics: Any) -> MetricsSample | None:
        """From any object with these attributes (e.g. telemetry's EngineMetrics); None if unavailable."""
        if metrics is None or not getattr(metrics, "available", True):
            return None
        if isinstance(metrics, MetricsSample):
            return metrics
        get = lambda name: _number(getattr(metrics, name, None))  # noqa: E731
        return cls(running=get("running") or 0, queued=get("queued") or 0,
                   requests_total=get("requests_total"), prompt_tokens_total=get("prompt_tokens_total"),
                   generation_tokens_total=get("generation_tokens_total"))


def _number(value: Any) -> float | None:
    """A reading as a float; None for missing ones (None, NaN, telemetry's NA)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


@dataclass(frozen=True)
class IdleStatus:
    state: IdleState
    seconds_idle: float
    seconds_left: float | None  # None while active, disabled or done
    reason_alive: str  # why it is not counting, e.g. "busy: 2 API requests"
    reason_action: str  # "idle" | "budget" | "" (why it warns or acts)
    warning_started: bool  # true on the one tick that entered WARNING: ring the bell
    metrics_available: bool
    action: str = "stop-engine"
    action_due: bool = False  # true on the one tick that entered ACTING: run the action
    last_activity: str = ""  # what last kept it alive, e.g. "API request"
    paid_left: float | None = None  # idle.stop_at = billing-boundary: seconds until paid time ends

    def describe(self, wall: float | None = None) -> str:
        """Header text: 'idle 12:30 — stop in 17:30', 'busy: 2 API requests', 'idle stop in 4:59',
        and when holding until a billing boundary 'paid until 10:59 · stop at 10:58:15' (short
        enough for an 80-column header next to the cost)."""
        text = self._describe()
        if self.paid_left is None or self.state not in (IdleState.IDLE, IdleState.SNOOZED, IdleState.WARNING):
            return text
        now = time.time() if wall is None else wall
        paid = "paid until " + time.strftime("%H:%M", time.localtime(now + self.paid_left))
        if self.state is IdleState.WARNING:
            return f"{text} · {paid}"
        stop = time.strftime("%H:%M:%S", time.localtime(now + (self.seconds_left or 0)))
        held = f"{paid} · stop at {stop}"
        return f"snoozed · {held}" if self.state is IdleState.SNOOZED else held

    def _describe(self) -> str:
        verb = "power off" if self.action == "poweroff" else "stop"
        left = clock_text(self.seconds_left or 0, up=True)
        s = self.state
        if s is IdleState.DISABLED:
            return "idle stop off"
        if s is IdleState.DONE:
            return f"stopped ({self.reason_action})"
        if s is IdleState.ACTING:
            doing = "powering off" if self.action == "poweroff" else "stopping engine"
            return f"{doing} ({self.reason_action})"
        if s is IdleState.ACTIVE:
            text = self.reason_alive
        elif s is IdleState.WARNING:
            text = f"budget reached — {verb} in {left}" if self.reason_action == "budget" \
                else f"idle {verb} in {left}"
        elif s is IdleState.SNOOZED:
            text = f"snoozed — {verb} in {left}"
        else:
            text = f"idle {clock_text(self.seconds_idle)} — {verb} in {left}"
        return text if self.metrics_available else f"{text} (no metrics)"


def clock_text(seconds: float, up: bool = False) -> str:
    """'4:59', '1:02:03'; `up` rounds up so a countdown never shows 0:00 before it acts."""
    whole = max(0, math.ceil(seconds - 1e-9) if up else int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Watchdog:
    """Decides ACTIVE/IDLE/WARNING/ACTING from activity events and an injected clock."""

    def __init__(self, timeout: float, warn_before: float, *, action: str = "stop-engine",
                 clock: Callable[[], float] = time.monotonic, enabled: bool = True,
                 gauge_stale: float = 30.0, credit_ttl: float = 60.0) -> None:
        if _number(timeout) is None or timeout <= 0:
            raise UsageError(f"idle timeout must be a number of seconds greater than zero, got {timeout!r}")
        if _number(warn_before) is None or not 0 <= warn_before < timeout:
            raise UsageError(f"idle warn_before ({warn_before!r}s) must be 0 or more and shorter "
                             f"than the idle timeout ({timeout:g}s)")
        if action not in ACTIONS:
            raise UsageError(f"idle action must be one of {', '.join(ACTIONS)}, got {action!r}")
        self.timeout, self.warn_before, self.action = float(timeout), float(warn_before), action
        # idle.stop_at = billing-boundary: maps the idle deadline to (stop at, paid until), or None
        self.boundary: Callable[[float], tuple[float, float] | None] | None = None
        self._clock, self._gauge_stale, self._credit_ttl = clock, gauge_stale, credit_ttl
        self._disabled = not enabled
        self._console = 0  # console chats in flight
        self._own = 0  # qwentui's own non-activity requests in flight (probes)
        self._batch = False
        self._metrics_ok = False
        self.rearm()

    @classmethod
    def from_config(cls, idle_cfg: Any, clock: Callable[[], float] = time.monotonic) -> Watchdog:
        """From `Config.idle` (timeout, warn_before, action, enabled)."""
        return cls(idle_cfg.timeout, idle_cfg.warn_before, action=idle_cfg.action,
                   clock=clock, enabled=idle_cfg.enabled)

    def rearm(self) -> None:
        """Start afresh (engine (re)started): counting from now, no snooze, no budget, new baseline.

        The warm-up's counter increments fall before the new baseline. (Its 8 tokens stay
        under SGLang's decode-log interval, so it leaves no stale running gauge.)
        """
        now = self._clock()
        self._last_activity, self._last_source = now, "engine start"
        self._snooze_until = 0.0
        self._budget: tuple[str, float] | None = None
        self._acting: str | None = None  # reason while ACTING
        self._done = False
        self._due_sent = self._warned = False
        self._external_busy = 0
        self._prev: MetricsSample | None = None
        self._credits: deque[list[float]] = deque()  # [time, requests, tokens] own, not yet seen
        self._debt = 0.0  # own requests seen in counters before they were reported finished
        self._own_finishes: deque[float] = deque()  # own finishes a stale gauge may still show
        self._gauge_seen: float | None = None  # last running + queued
        self._gauge_at_finish: float | None = None  # its value when an own request last finished

    # -- activity inputs -------------------------------------------------------------

    def console_started(self) -> None:
        """A console chat request was sent (activity until it finishes)."""
        self._console += 1
        self._touch("console chat")

    def console_finished(self, prompt_tokens: int = 0, generation_tokens: int = 0, *,
                         counted: bool = True) -> None:
        """A console chat finished; its tokens are own traffic in the counters.

        `counted=False` when it never reached the engine (connect error, rejected), so the
        counters will not move for it.
        """
        self._console = max(0, self._console - 1)
        self._touch("console chat")
        if counted:
            self._own_done(1, prompt_tokens, generation_tokens)

    def own_started(self) -> None:
        """qwentui's own non-user request (health probe) started: never activity."""
        self._own += 1

    def own_finished(self) -> None:
        """An own health probe finished: it may linger in a stale running gauge, but it never
        moved the counters (log_metrics=False), so nothing is credited against them."""
        self._own = max(0, self._own - 1)
        self._own_finishes.append(self._clock())
        self._gauge_at_finish = self._gauge_seen

    def note_own_requests(self, n: int = 1, prompt_tokens: int = 0, generation_tokens: int = 0) -> None:
        """Own requests that already finished and were not reported as started (after the fact)."""
        self._own_done(n, prompt_tokens, generation_tokens)

    def set_batch_running(self, running: bool) -> None:
        if self._batch != running or running:
            self._touch("batch")
        self._batch = running

    def observe_metrics(self, metrics: Any) -> None:
        """A `/metrics` sample (MetricsSample, telemetry EngineMetrics, or None when unavailable)."""
        sample = MetricsSample.of(metrics)
        if sample is None:
            if self._external_busy:
                self._touch("API request")
            self._metrics_ok, self._external_busy = False, 0
            return
        self._metrics_ok = True
        self._observe_counters(sample)
        self._observe_gauges(sample)

    def budget_reached(self, kind: str = "session") -> None:
        """The session or month budget is reached: warn for warn_before, then act (reason "budget")."""
        if self._budget is None:
            self._budget = (kind, self._clock() + self.warn_before)

    # -- user controls ---------------------------------------------------------------

    def snooze(self) -> bool:
        """Push the deadline out by the timeout (repeatable). False when there is nothing to snooze."""
        if self._acting or self._done or (self._disabled and not self._budget):
            return False
        now = self._clock()
        if self._budget:
            kind, deadline = self._budget
            self._budget = (kind, max(deadline, now) + self.timeout)
        else:
            self._snooze_until = max(self._idle_deadline(), now) + self.timeout
        self._warned = False
        return True

    def disable(self) -> None:
        """No idle action for the rest of this session (a reached budget still acts)."""
        self._disabled = True
        self._warned = False

    def enable(self) -> None:
        if self._disabled:
            self._disabled = False
            self._touch("enabled")

    def stop_now(self, reason: str = "idle") -> None:
        """Act at the next tick ("Stop now" in the warning)."""
        if not self._done and not self._acting:
            self._acting, self._due_sent = reason, False

    def action_done(self) -> None:
        """The action finished (engine stopped / poweroff sent): DONE until `rearm()`."""
        self._done = True

    # -- output ----------------------------------------------------------------------

    def tick(self) -> IdleStatus:
        now = self._clock()
        self._prune(now)
        if self._done:
            return self._status(IdleState.DONE, now, reason_action=self._acting or "idle")
        if self._acting:  # before DISABLED: "Stop now" works even with the timer off
            due, self._due_sent = not self._due_sent, True
            return self._status(IdleState.ACTING, now, left=0.0, reason_action=self._acting, due=due)
        if self._budget:  # a budget is a hard cap: "disable" turns off only the idle timer
            return self._countdown(now, self._budget[1], "budget")
        if self._disabled:
            return self._status(IdleState.DISABLED, now)
        alive = self._alive_reasons()
        if alive:
            self._last_activity, self._warned = now, False
            return self._status(IdleState.ACTIVE, now, alive=alive)
        return self._countdown(now, self._idle_deadline(), "idle")

    # -- internals -------------------------------------------------------------------

    def _countdown(self, now: float, deadline: float, reason: str) -> IdleStatus:
        paid = None
        if reason == "idle" and self.boundary is not None:
            held = self.boundary(deadline)
            if held is not None:
                deadline, paid = max(deadline, held[0]), held[1] - now
        left = deadline - now
        if left <= 0:
            self._acting = reason
            return self.tick()
        if left <= self.warn_before:
            started, self._warned = not self._warned, True
            return self._status(IdleState.WARNING, now, left=left, reason_action=reason, warn=started,
                                paid=paid)
        self._warned = False
        snoozed = self._snooze_until > self._last_activity + self.timeout
        return self._status(IdleState.SNOOZED if snoozed else IdleState.IDLE, now, left=left, paid=paid)

    def _status(self, state: IdleState, now: float, *, left: float | None = None, alive: str = "",
                reason_action: str = "", warn: bool = False, due: bool = False,
                paid: float | None = None) -> IdleStatus:
        idle = 0.0 if state is IdleState.ACTIVE else max(0.0, now - self._last_activity)
        return IdleStatus(state=state, seconds_idle=idle, seconds_left=left, reason_alive=alive,
                          reason_action=reason_action, warning_started=warn,
                          metrics_available=self._metrics_ok, action=self.action,
                          action_due=due, last_activity=self._last_source, paid_left=paid)

    def _idle_deadline(self) -> float:
        return max(self._last_activity + self.timeout, self._snooze_until)

    def _alive_reasons(self) -> str:
        reasons = []
        if self._external_busy:
            reasons.append(f"busy: {_plural(self._external_busy, 'API request')}")
        if self._console:
            reasons.append("console chat in flight" if self._console == 1
                           else f"{self._console} console chats in flight")
        if self._batch:
            reasons.append("batch running")
        return ", ".join(reasons)

    def _touch(self, source: str) -> None:
        self._last_activity = max(self._last_activity, self._clock())
        self._last_source = source
        self._warned = False

    def _own_done(self, n: int, prompt_tokens: int, generation_tokens: int) -> None:
        now = self._clock()
        self._own_finishes.extend([now] * n)
        self._gauge_at_finish = self._gauge_seen
        paid = min(self._debt, n)  # already matched against the counters while in flight
        self._debt -= paid
        if n - paid > 0 or prompt_tokens or generation_tokens:
            self._credits.append([now, n - paid, prompt_tokens + generation_tokens])

    def _prune(self, now: float) -> None:
        while self._own_finishes and self._own_finishes[0] < now - self._gauge_stale:
            self._own_finishes.popleft()
        while self._credits and self._credits[0][0] < now - self._credit_ttl:
            self._credits.popleft()

    def _observe_gauges(self, s: MetricsSample) -> None:
        self._prune(self._clock())
        total = s.running + s.queued
        if total != self._gauge_at_finish:  # refreshed since: it counts only what runs now
            self._own_finishes.clear()
        self._gauge_seen = total
        allowed = self._console + self._own + len(self._own_finishes)
        busy = max(0, int(total) - allowed)
        if busy or self._external_busy:
            self._touch("API request")
        self._external_busy = busy

    def _observe_counters(self, s: MetricsSample) -> None:
        prev, self._prev = self._prev, s
        use_requests = s.requests_total is not None
        cur = s.requests_total if use_requests else _tokens(s)
        before = None if prev is None else (prev.requests_total if use_requests else _tokens(prev))
        if cur is None or before is None or cur < before:
            if before is not None and cur is not None:  # counters reset: the engine restarted
                self._credits.clear()
                self._debt = 0.0
            return
        excess = self._consume_credits(cur - before, 1 if use_requests else 2)
        if use_requests and excess > 0:  # own requests in flight whose finish is not reported yet
            advance = min(excess, max(0.0, self._console - self._debt))  # probes never count
            self._debt += advance
            excess -= advance
        if excess > 0:
            self._touch("API request")

    def _consume_credits(self, delta: float, field: int) -> float:
        """Subtract own traffic (oldest first) from a counter increase; return what is left."""
        for credit in self._credits:
            take = min(credit[field], delta)
            credit[field] -= take
            delta -= take
        while self._credits and self._credits[0][field] <= 0:
            self._credits.popleft()
        return delta


def _tokens(s: MetricsSample) -> float | None:
    if s.prompt_tokens_total is None and s.generation_tokens_total is None:
        return None
    return (s.prompt_tokens_total or 0) + (s.generation_tokens_total or 0)
