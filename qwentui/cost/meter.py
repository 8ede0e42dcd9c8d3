"""The live cost meter: what this box and this engine session cost, right now.

The meter is fed events (GPU seen, engine started/stopped, tokens, idle on/off) and
answers `snapshot()` with a frozen `CostSnapshot`. It never sleeps or polls: the
caller drives it (the UI each telemetry tick, `heartbeat()` every `cost.heartbeat`).

Billing basis: `instance` bills the box since boot (`psutil.boot_time()`), `engine`
only while the engine runs. Today and this month are the ledger's earlier sessions
plus the live span, cut at local midnight and month boundaries. Each span is billed by
`cost.granularity` and `cost.minimum` (cost/billing.py): what a started unit commits to
counts at once, as the provider will charge it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any, Callable

from qwentui.cost import periods
from qwentui.cost.billing import Billing
from qwentui.cost.ledger import STOP_REASONS, Ledger, SessionRow
from qwentui.cost.prices import box_price, classify, price_per_hour, symbol, to_decimal
from qwentui.errors import QwentuiError

HISTORY_REFRESH_S = 300.0


@dataclass(frozen=True)
class CostSnapshot:
    """Everything the cost pane shows. Money is Decimal (None = price unknown), unrounded."""

    at: float
    currency: str
    symbol: str
    basis: str
    gpu_model: str | None
    gpu_class: str | None
    rate_per_hour: Decimal | None
    engine_running: bool
    engine_seconds: float
    engine_session_cost: Decimal | None
    box_seconds: float
    box_since_boot_cost: Decimal | None
    session_cost: Decimal | None
    today_cost: Decimal
    month_cost: Decimal
    projected_month: Decimal | None
    idle_seconds: float
    idle_cost: Decimal | None
    tokens_in: int
    tokens_out: int
    requests: int
    per_1k_tokens: Decimal | None
    cache_hits: int
    cache_saved_tokens: int
    cache_saved_cost: Decimal | None
    budget_session: Decimal | None
    budget_month: Decimal | None
    session_id: int | None = None
    ledger_error: str | None = None

    @property
    def price_known(self) -> bool:
        return self.rate_per_hour is not None

    @property
    def budget_exceeded(self) -> str | None:
        """'session' or 'month' when that budget is spent, else None."""
        if self.budget_session is not None and (self.session_cost or 0) >= self.budget_session:
            return "session"
        if self.budget_month is not None and self.month_cost >= self.budget_month:
            return "month"
        return None


def _budget(value: float) -> Decimal | None:
    return to_decimal(value) if value and value > 0 else None


def _clipped(price: Decimal | None, start: float, stop: float, a: float, b: float) -> Decimal:
    lo, hi = max(a, start), min(b, stop)
    return (periods.cost_of(price, lo, hi) or Decimal(0)) if hi > lo else Decimal(0)


class _Counters:
    """Turns the engine's cumulative counters into increments; a drop means a restart."""

    def __init__(self) -> None:
        self.last: tuple[int, int, int] | None = None

    def delta(self, values: tuple[int, int, int]) -> tuple[int, int, int]:
        last, self.last = self.last, values
        if last is None:
            return (0, 0, 0)
        if any(v < prev for v, prev in zip(values, last)):
            return values
        return tuple(v - prev for v, prev in zip(values, last))  # type: ignore[return-value]


class Meter:
    """Live cost of the box and the engine session; optionally writes the ledger."""

    def __init__(self, cfg: Any, *, clock: Callable[[], float] = time.time,
                 boot_time: float | Callable[[], float] | None = None,
                 ledger: Ledger | None = None, tz: tzinfo | None = None) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.tz = tz
        self._clock = clock
        self._boot = boot_time
        self.gpu_model: str | None = None
        self.gpu_class: str | None = None
        self.rate: Decimal | None = price_per_hour(cfg, None)
        self.billing = Billing.from_config(cfg)
        self.session_id: int | None = None
        self.ledger_error: str | None = None
        self._engine_start: float | None = None
        self._last_span: tuple[float, float] | None = None
        self._local_closed: list[tuple[float, float, Decimal | None]] = []
        self._session_tokens = [0, 0, 0]
        self._total_tokens = [0, 0, 0]
        self._counters = _Counters()
        self._counters_seen = False
        self._is_idle = False
        self._idle_since: float | None = None
        self._idle_seconds = 0.0
        self._idle_cost = Decimal(0)
        self._cache = [0, 0]
        self._history: list[SessionRow] = []
        self._history_at: float | None = None
        self._history_month: float | None = None

    # -- inputs --------------------------------------------------------------------------

    @property
    def basis(self) -> str:
        return self.cfg.cost.billing

    @property
    def engine_running(self) -> bool:
        return self._engine_start is not None

    def boot_time(self) -> float:
        if self._boot is None:
            import psutil

            self._boot = psutil.boot_time()
        return self._boot() if callable(self._boot) else float(self._boot)

    def set_gpu(self, gpu_model: str | None, gpu_class: str | None = None, count: int = 1) -> None:
        """The GPU this box bills for (× `count` on a multi-GPU box); the class comes from the name."""
        cls = gpu_class or classify(gpu_model)
        if count > 1 and gpu_model:
            gpu_model = f"{count}x {gpu_model}"  # the ledger row names the whole box
        if (gpu_model, cls) == (self.gpu_model, self.gpu_class):
            return
        self._flush_idle()
        self.gpu_model, self.gpu_class = gpu_model, cls
        self.rate = box_price(self.cfg, cls, count)
        if self.session_id is not None:
            self._ledger_call(self.ledger.set_gpu, self.session_id, gpu_model or "", cls or "", self.rate)

    def engine_started(self, *, kind: str = "sglang", at: float | None = None) -> int | None:
        """The engine began (billing starts for basis 'engine'); opens a ledger session."""
        if self.engine_running:
            return self.session_id
        self._flush_idle()
        self._engine_start = self._now(at)
        self._session_tokens = [0, 0, 0]
        if self._is_idle and self._idle_since is None:  # engine basis: idle billing resumes
            self._idle_since = self._engine_start
        if self.ledger is not None:
            self.session_id = self._ledger_call(
                self.ledger.open_session, self.gpu_model or "", self.rate, kind,
                gpu_class=self.gpu_class or "", currency=self.cfg.cost.currency, at=self._engine_start,
                billing=self.billing)
        return self.session_id

    def engine_stopped(self, reason: str = "user", *, at: float | None = None) -> SessionRow | None:
        """The engine is gone; closes the ledger session with `reason` (see STOP_REASONS)."""
        if not self.engine_running:
            return None
        stop = self._now(at)
        self._flush_idle(stop)
        if self.basis == "engine":
            self._idle_since = None
        start, self._engine_start = self._engine_start, None
        self._last_span = (start, stop)
        row = None
        if self.session_id is not None:
            tin, tout, reqs = self._session_tokens
            row = self._ledger_call(self.ledger.close_session, self.session_id, reason, at=stop,
                                    tokens_in=tin, tokens_out=tout, requests=reqs)
            self.session_id = None
            self._history_at = None
        elif self.ledger is None:
            self._local_closed.append((start, stop, self.rate))
        return row

    def observe_engine(self, status: Any) -> None:
        """Follow an engine supervisor's `EngineStatus` (STARTING/READY run, STOPPED/CRASHED stop)."""
        state = str(getattr(status.state, "value", status.state)).lower()
        if state in ("starting", "ready", "stopping"):
            if not self.engine_running:
                self.engine_started(kind=getattr(status, "kind", "sglang") or "sglang",
                                    at=getattr(status, "started_at", None))
        elif state in ("stopped", "crashed") and self.engine_running:
            reason = getattr(status, "stop_reason", None)
            if reason not in STOP_REASONS:
                reason = "crash" if state == "crashed" else "user"
            self.engine_stopped(reason)

    def add_usage(self, tokens_in: int, tokens_out: int, requests: int = 1) -> None:
        """Tokens of one request (chat `Usage`). Ignored once engine counters are observed."""
        if not self._counters_seen:
            self._add_tokens((tokens_in, tokens_out, requests))

    def set_counters(self, prompt_total: int, generation_total: int, requests_total: int) -> None:
        """The engine's cumulative Prometheus counters; increments are counted."""
        self._counters_seen = True
        self._add_tokens(self._counters.delta((int(prompt_total), int(generation_total),
                                               int(requests_total))))

    def observe(self, snapshot: Any) -> None:
        """A telemetry `Snapshot`: the first GPU's name and class, the engine's counters."""
        gpus = getattr(getattr(snapshot, "gpu", None), "gpus", None) or ()
        if gpus:
            self.set_gpu(gpus[0].name, getattr(gpus[0], "gpu_class", None) or None, count=len(gpus))
        engine = getattr(snapshot, "engine", None)
        if engine is not None and getattr(engine, "available", False):
            values = (getattr(engine, "prompt_tokens_total", None),
                      getattr(engine, "generation_tokens_total", None),
                      getattr(engine, "requests_total", None))
            if all(isinstance(v, (int, float)) and v == v for v in values):  # NA / NaN = unknown
                self.set_counters(*values)

    def record_idle(self, is_idle: bool, *, at: float | None = None) -> None:
        """The idle watchdog's verdict; idle time that is billed adds to idle cost."""
        now = self._now(at)
        if is_idle == self._is_idle:
            return
        self._is_idle = is_idle
        if is_idle:
            if self.basis == "instance" or self.engine_running:
                self._idle_since = now
        else:
            self._flush_idle(now)
            self._idle_since = None

    def add_cache_savings(self, hits: int, saved_tokens: int) -> None:
        """Cache hits and generated tokens they saved; also recorded on the ledger session."""
        self._cache[0] += hits
        self._cache[1] += saved_tokens
        if self.session_id is not None:
            self._ledger_call(self.ledger.add_cache_savings, self.session_id, hits, saved_tokens)

    def heartbeat(self) -> bool:
        """Write the open session's heartbeat and counters; call every `cost.heartbeat`."""
        if self.session_id is None:
            return False
        tin, tout, reqs = self._session_tokens
        return bool(self._ledger_call(self.ledger.heartbeat, self.session_id, tin, tout, reqs,
                                     at=self._clock()))

    def refresh(self) -> None:
        """Reload earlier sessions from the ledger on the next snapshot."""
        self._history_at = None

    # -- internals -----------------------------------------------------------------------

    def _now(self, at: float | None = None) -> float:
        return self._clock() if at is None else at

    def _add_tokens(self, delta: tuple[int, int, int]) -> None:
        for i, value in enumerate(delta):
            self._session_tokens[i] += value
            self._total_tokens[i] += value

    def _ledger_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except QwentuiError as exc:
            self.ledger_error = exc.message
            return None
        self.ledger_error = None
        return result

    def _flush_idle(self, now: float | None = None) -> None:
        if self._idle_since is None:
            return
        now = self._now(now)
        seconds = max(0.0, now - self._idle_since)
        self._idle_seconds += seconds
        self._idle_cost += periods.cost_of(self.rate, self._idle_since, now) or 0
        self._idle_since = now

    def _live_span(self, now: float) -> tuple[float, float] | None:
        if self.basis == "instance":
            return (min(self.boot_time(), now), now)
        return (self._engine_start, now) if self._engine_start is not None else None

    def _billed(self, start: float, stop: float) -> float:
        return start + self.billing.billed_seconds(start, stop)

    def paid_until(self, now: float | None = None) -> tuple[float, float] | None:
        """(start of the billed span, when its paid time runs out), None when nothing is billed."""
        now = self._now(now)
        live = self._live_span(now)
        return None if live is None else (live[0], self.billing.paid_until(live[0], now))

    def _load_history(self, now: float) -> list[SessionRow]:
        month0 = periods.month_start(now, self.tz)
        fresh = self._history_at is not None and now - self._history_at < HISTORY_REFRESH_S
        if self.ledger is None or (fresh and self._history_month == month0):
            return self._history
        try:
            rows = self.ledger.sessions(month0, None)
        except QwentuiError as exc:
            self.ledger_error = exc.message
            return self._history
        self._history = [r for r in rows if r.id != self.session_id]
        self._history_at, self._history_month = now, month0
        return self._history

    def _spent_between(self, a: float, b: float, now: float) -> Decimal:
        """Earlier sessions plus the live span inside [a, b)."""
        live = self._live_span(now)
        total = Decimal(0)
        for row in self._load_history(now):
            if self.basis == "instance" and live and row.start >= live[0]:
                continue  # the box span since boot already bills this session
            total += row.cost_between(a, b) or 0
        for start, stop, price in self._local_closed:
            if not (self.basis == "instance" and live and start >= live[0]):
                total += _clipped(price, start, self._billed(start, stop), a, b)
        if live:
            total += _clipped(self.rate, live[0], self._billed(*live), a, b)
        return total

    # -- output --------------------------------------------------------------------------

    def snapshot(self) -> CostSnapshot:
        """The cost picture at `clock()`; cheap enough for every UI tick."""
        now = self._clock()
        rate = self.rate
        boot = min(self.boot_time(), now)
        if self._engine_start is not None:
            engine_span = (self._engine_start, now)
        else:
            engine_span = self._last_span or (now, now)
        engine_cost = self.billing.cost(rate, *engine_span)
        box_cost = self.billing.cost(rate, boot, now)
        day0 = periods.day_start(now, self.tz)
        today = self._spent_between(day0, periods.day_start(day0 + 90000, self.tz), now)
        month0 = periods.month_start(now, self.tz)
        wall = periods.local(now, self.tz)
        month = self._spent_between(month0, periods.month_bounds(wall.year, wall.month, self.tz)[1], now)
        tokens = self._total_tokens if self.basis == "instance" else self._session_tokens
        session_cost = box_cost if self.basis == "instance" else engine_cost
        per_1k = self._per_1k(session_cost, tokens[1])
        return CostSnapshot(
            at=now, currency=self.cfg.cost.currency, symbol=symbol(self.cfg.cost.currency),
            basis=self.basis, gpu_model=self.gpu_model, gpu_class=self.gpu_class,
            rate_per_hour=rate, engine_running=self.engine_running,
            engine_seconds=engine_span[1] - engine_span[0], engine_session_cost=engine_cost,
            box_seconds=now - boot, box_since_boot_cost=box_cost, session_cost=session_cost,
            today_cost=today, month_cost=month,
            projected_month=self._projection(month, month0, now),
            idle_seconds=self._idle_seconds + self._idle_live(now),
            idle_cost=None if rate is None else self._idle_cost + (
                periods.cost_of(rate, self._idle_since, now) if self._idle_since is not None else 0),
            tokens_in=tokens[0], tokens_out=tokens[1], requests=tokens[2], per_1k_tokens=per_1k,
            cache_hits=self._cache[0], cache_saved_tokens=self._cache[1],
            cache_saved_cost=None if per_1k is None else per_1k * self._cache[1] / 1000,
            budget_session=_budget(self.cfg.cost.budget_session),
            budget_month=_budget(self.cfg.cost.budget_month),
            session_id=self.session_id, ledger_error=self.ledger_error)

    def _idle_live(self, now: float) -> float:
        return max(0.0, now - self._idle_since) if self._idle_since is not None else 0.0

    @staticmethod
    def _per_1k(cost: Decimal | None, tokens_out: int) -> Decimal | None:
        if cost is None or tokens_out <= 0:
            return None
        return cost * 1000 / tokens_out

    def _projection(self, month_cost: Decimal, month0: float, now: float) -> Decimal | None:
        """Month-to-date spend stretched over the whole month (the current pattern)."""
        elapsed_ms = periods.to_ms(now) - periods.to_ms(month0)
        if elapsed_ms <= 0 or self.rate is None and month_cost == 0:
            return None
        wall = periods.local(now, self.tz)
        _, month_end = periods.month_bounds(wall.year, wall.month, self.tz)
        total_ms = periods.to_ms(month_end) - periods.to_ms(month0)
        return month_cost * total_ms / elapsed_ms
