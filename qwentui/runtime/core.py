"""The runtime both the console and `qwentui serve` run: engine + telemetry + cost + idle.

One loop per `telemetry.interval`:

    sample ─→ meter (GPU, counters, heartbeat, idle time) ─→ watchdog (metrics, budget)
           ─→ tick ─→ act when due (ActionRunner: stop engine, close the ledger row,
              poweroff) ─→ publish a frozen RuntimeSnapshot

The watchdog is armed when the engine becomes ready (never counting a cold start) and
gets a fresh ActionRunner each time, so "restart after an idle stop" acts again later.
Attached to someone else's server the runtime never stops it: the watchdog and the
budget guard are off and no ledger row is written (the bill is not ours to record).
No UI imports: the app and serve read snapshots and call the control methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from qwentui.cost.activity import ActivityRecorder
from qwentui.cost.billing import BoundaryHold
from qwentui.cost.ledger import STOP_REASONS as LEDGER_REASONS
from qwentui.cost.meter import CostSnapshot, Meter
from qwentui.errors import QwentuiError
from qwentui.idle.watchdog import IdleState, IdleStatus, Watchdog
from qwentui.idle.actions import ActionResult, ActionRunner

log = logging.getLogger(__name__)

COUNTING = ("idle", "snoozed", "warning")  # idle states whose time is billed as idle
PIDS_TTL = 10.0  # seconds between re-reads of the engine's process tree (a scan of /proc)
QUIET_SAMPLE_S = 5.0  # a quiet engine's /metrics and host stats are read this often (Sampler.quiet_interval)
SIM_GPU_CLASS = "T4"
GUARD_GONE = "off: guard gone"  # a console's last snapshot after its guard went away  # the demo's price: the cheapest class of the shipped price table


def state_of(status: Any) -> str:
    """'ready', 'stopped', ... from an EngineStatus (enum or plain string state)."""
    state = getattr(status, "state", "")
    return str(getattr(state, "value", state)).lower()


def parked(action: str = "stop-engine", text: str = "") -> IdleStatus:
    """The idle status while the watchdog is not armed (engine starting or not running)."""
    return IdleStatus(state=IdleState.ACTIVE, seconds_idle=0.0, seconds_left=None, reason_alive=text,
                      reason_action="", warning_started=False, metrics_available=True, action=action)


@dataclass(frozen=True)
class RuntimeSnapshot:
    """Everything the UI shows each tick; all parts are frozen snapshots themselves."""

    engine: Any  # EngineStatus
    telemetry: Any  # telemetry Snapshot, or None (serve: metrics only)
    cost: CostSnapshot
    idle: IdleStatus
    watchdog: str = "on"  # "on" | "off: attached server" | "off: idle.enabled = false"
    ledger_error: str | None = None  # why this session is not recorded
    cache: Any = None  # CacheStats when a cache is in use
    action: ActionResult | None = None  # the last idle/budget action's result
    seq: int = 0

    @property
    def warning(self) -> bool:
        return self.idle.state is IdleState.WARNING

    @property
    def idle_text(self) -> str:
        """Header text: the countdown, what keeps the engine alive, or why the watchdog is off."""
        if self.watchdog.startswith("off: attached"):
            return "no guard: idle stop off (attached)"
        if self.watchdog == GUARD_GONE:
            return "no guard: nothing stops the engine"
        return self.idle.describe()


class _MetricsOnly:
    """A telemetry-shaped wrapper for a bare `/metrics` result (serve has no sampler)."""

    gpu = None

    def __init__(self, engine: Any) -> None:
        self.engine = engine


class Runtime:
    """Owns the engine's companions for one console or serve run; drive it with `run()`
    (console) or `step()` per tick (serve)."""

    def __init__(self, cfg: Any, supervisor: Any, *, idle_cfg: Any = None, sampler: Any = None,
                 scrape: Callable[[], Awaitable[Any]] | None = None, ledger: Any = "default",
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 boot_time: Any = None, on_snapshot: Callable[[RuntimeSnapshot], Any] | None = None,
                 on_message: Callable[[str], Any] | None = None,
                 on_action_start: Callable[[IdleStatus], Any] | None = None,
                 on_action_done: Callable[[ActionResult], Any] | None = None,
                 inline_actions: bool = False, cache: Any = None) -> None:
        self.cfg, self.supervisor = cfg, supervisor
        self.idle_cfg = idle_cfg if idle_cfg is not None else cfg.idle
        self.attached = bool(getattr(supervisor.status, "attached", False))
        self._clock, self._wall = clock, wall
        self.on_snapshot, self.on_message = on_snapshot, on_message
        self.on_action_start, self.on_action_done = on_action_start, on_action_done
        self.inline_actions = inline_actions
        self.cache = cache
        self._scrape = scrape
        self.sampler = sampler if sampler is not None or scrape is not None else self._default_sampler()
        self.watchdog = Watchdog.from_config(self.idle_cfg, clock)
        if self.attached:
            self.watchdog.disable()
        self.ledger_error: str | None = None
        self.ledger = self._open_ledger(ledger)
        self.meter = Meter(cfg, clock=wall, ledger=self.ledger, boot_time=boot_time)
        self.activity = ActivityRecorder(lambda: self.ledger, boot_time=self.meter.boot_time)
        self.watchdog.boundary = BoundaryHold.for_runtime(cfg, self.idle_cfg, self.meter, clock, wall)
        plan = getattr(supervisor, "plan", None)
        if plan is not None and getattr(plan, "gpu_name", None):
            self.meter.set_gpu(plan.gpu_name, getattr(plan, "gpu_class", None) or None)
        self.runner: ActionRunner | None = None
        self.last_action: ActionResult | None = None
        self.latest: RuntimeSnapshot | None = None
        self._armed = False
        self._ledger_final = False  # closed for a poweroff: reopen on restart
        self._beat_at: float | None = None
        self._telemetry: Any = None
        self._metrics: Any = None
        self._seq = 0
        self._pids: tuple[float, list[int]] | None = None
        self._gpu_probed = False  # serve: NVML read once (see _gpu_once)
        self._stop_reason: str | None = None  # see stop_requested
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._action_task: asyncio.Task | None = None
        self._unsubscribe = supervisor.subscribe(self._on_engine)

    # -- set-up ------------------------------------------------------------------------

    def _default_sampler(self) -> Any:
        from qwentui.telemetry.sampler import Sampler

        return Sampler.from_config(self.cfg, base_url=None, engine_pids=self.engine_pids,
                                   quiet_interval=QUIET_SAMPLE_S,
                                   simulated=bool(getattr(self.supervisor.status, "simulated", False)))

    def _open_ledger(self, ledger: Any) -> Any:
        if self.attached:
            self.ledger_error = "not recorded: attached to a server qwentui did not start"
            return None
        if ledger != "default":
            return ledger
        from qwentui.cost.ledger import Ledger, LedgerDataError, LedgerError, path_for

        try:
            opened = Ledger(path_for(self.cfg.engine.kind))
            opened.recover(stale_after=3 * self.cfg.cost.heartbeat)
        except (LedgerError, LedgerDataError, OSError) as exc:
            why = exc.message if isinstance(exc, QwentuiError) else (exc.strerror or str(exc))
            self.ledger_error = f"cost ledger unavailable: {why}; this session is not recorded"
            self._say(self.ledger_error)
            return None
        return opened

    @property
    def watchdog_state(self) -> str:
        if self.attached:
            return "off: attached server"
        if not self.idle_cfg.enabled:
            return "off: idle.enabled = false"
        return "on"

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def metrics(self) -> Any:
        """The last engine metrics read (EngineMetrics / scrape result), None before any."""
        return self._metrics

    def engine_pids(self) -> list[int]:
        """The engine's process tree, re-read at most every PIDS_TTL seconds and at once after
        an engine change (called in the sampler's worker thread each tick)."""
        now = self._clock()
        cached = self._pids
        if cached is None or not 0 <= now - cached[0] < PIDS_TTL:
            cached = self._pids = (now, list(self.supervisor.pids()))
        return cached[1]

    def _say(self, text: str) -> None:
        if self.on_message is not None:
            self.on_message(text)

    # -- engine ------------------------------------------------------------------------

    def stop_requested(self, reason: str) -> None:
        """A signal arrived: the stop that follows records `reason`, also when it is a
        start-up (first or an F5 restart) cancelled by the app's teardown, which stops the
        engine as "user" before `close()` can say why."""
        self._stop_reason = reason

    def _on_engine(self, status: Any) -> None:
        self._pids = None  # processes come and go with the engine's state
        if (self._stop_reason and self.meter.engine_running and state_of(status) in ("stopped", "crashed")
                and getattr(status, "stop_reason", None) in (None, "user")):
            self.meter.engine_stopped(self._stop_reason)
        self.meter.observe_engine(status)
        self.activity.engine(status, self._wall())
        if state_of(status) == "starting":
            self._armed = False  # a new run: arm again once it is ready
        self.poke()

    async def start_engine(self) -> None:
        """Start (or re-attach to) the engine; raises QwentuiError like `Supervisor.start`."""
        self._armed = False
        self._reopen_ledger()
        nvml = getattr(self.sampler, "nvml", None)
        if nvml is not None and not self.attached:
            await asyncio.to_thread(nvml.mark_baseline)  # VRAM before launch: the engine's share later
        await self.supervisor.start()
        self.poke()

    async def restart_engine(self) -> None:
        """Stop (if running) and start again: new ledger session, watchdog re-armed on ready.
        The chat history is the UI's and is not touched."""
        if getattr(self.supervisor.status, "running", False) and not self.attached:
            await self.supervisor.stop("user")
        await self.start_engine()

    def _reopen_ledger(self) -> None:
        if not self._ledger_final:
            return
        from qwentui.cost.ledger import Ledger, LedgerDataError, LedgerError, path_for

        self._ledger_final = False
        try:
            self.ledger = Ledger(path_for(self.cfg.engine.kind))
        except (LedgerError, LedgerDataError) as exc:
            self.ledger_error = f"cost ledger unavailable: {exc.message}; this session is not recorded"
            self.ledger = None
        self.meter.ledger = self.ledger

    def _arm(self) -> None:
        self._armed = True
        self.watchdog.rearm()
        self.runner = ActionRunner(
            self.supervisor, action=self.idle_cfg.action, dry_run=self.idle_cfg.dry_run,
            poweroff_command=self.idle_cfg.poweroff_command, close_ledger=self._end_session,
            print_fn=self._say)

    # -- activity and controls (UI thread = the loop's thread) -------------------------

    def console_started(self) -> None:
        self.watchdog.console_started()
        hurry = getattr(self.sampler, "hurry", None)
        if hurry is not None:
            hurry()  # the GPU pane shows the request from the next tick on
        self.poke()

    def console_finished(self, prompt_tokens: int = 0, generation_tokens: int = 0, *,
                         counted: bool = True) -> None:
        """A console chat ended; `counted=False` when it never reached the engine (cache hit,
        connect error)."""
        self.watchdog.console_finished(prompt_tokens, generation_tokens, counted=counted)
        if counted:
            self.meter.add_usage(prompt_tokens, generation_tokens)
        self.poke()

    def cache_hit(self, saved_tokens: int) -> None:
        self.meter.add_cache_savings(1, saved_tokens)

    def snooze(self, seconds: float | None = None) -> bool:
        done = self.watchdog.snooze(seconds)
        self.poke()
        return done

    def disable(self) -> None:
        self.watchdog.disable()
        self.poke()

    def enable(self) -> None:
        self.watchdog.enable()
        self.poke()

    def hold(self, source: str, count: int) -> None:
        """Activity that is not a request: a batch running, consoles attached (idle.count_consoles)."""
        self.watchdog.hold(source, count)
        self.poke()

    def stop_now(self, reason: str = "idle") -> None:
        """"Stop now" in the warning: act at the next tick (right away via poke)."""
        if self._armed and not self.attached:
            self.watchdog.stop_now(reason)
            self.poke()

    def poke(self) -> None:
        """Publish a fresh snapshot now (without re-sampling), e.g. after a control."""
        if self._wake is not None:
            self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Step every telemetry interval until `close()`; a control or an engine change
        publishes at once without re-sampling."""
        self._wake = asyncio.Event()
        interval = self.cfg.telemetry.interval
        sample = True
        while not self._closed:
            try:
                await self.step(sample=sample)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad tick must not end the watchdog
                log.exception("runtime step failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
                sample = False
            except asyncio.TimeoutError:
                sample = True

    async def step(self, *, sample: bool = True) -> RuntimeSnapshot:
        """One tick: sample (unless told not to), feed meter and watchdog, act when due, publish."""
        status = self.supervisor.status
        ready = state_of(status) == "ready"
        if ready and not self._armed:
            self._arm()
        if sample:
            await self._sample(status)
        watching = self._armed and (ready or self._acting_or_done())
        if watching and ready and sample:
            self.watchdog.observe_metrics(self._metrics)
        self._heartbeat()
        cost = self.meter.snapshot()
        if watching and ready and not self.attached and cost.budget_exceeded:
            self.watchdog.budget_reached(cost.budget_exceeded)
        idle = self.watchdog.tick() if watching else parked(self.idle_cfg.action)
        self.meter.record_idle(watching and ready and idle.state.value in COUNTING)
        self.activity.observe(self._wall(), idle)
        snap = self._publish(status, cost, idle)
        if idle.action_due:
            if self.inline_actions:
                await self.act(idle)
            else:
                self._action_task = asyncio.ensure_future(self.act(idle))
        return snap

    def _acting_or_done(self) -> bool:
        runner = self.runner
        return runner is not None and runner.started

    async def _sample(self, status: Any) -> None:
        if self._scrape is not None:
            self._metrics = await self._scrape()
            self._telemetry = None
            self.meter.observe(_MetricsOnly(self._metrics))
            await self._gpu_once(status)
            return
        running = getattr(status, "running", False)
        self.sampler.base_url = self.supervisor.base_url if running else None
        self._telemetry = await self.sampler.sample_once()
        self._metrics = self._telemetry.engine
        self.meter.observe(self._telemetry)
        gpu_status = getattr(getattr(self._telemetry, "gpu", None), "status", None)
        self._price_simulated(status, no_gpu=gpu_status in ("no-nvml", "no-gpu"))

    async def _gpu_once(self, status: Any) -> None:
        """Serve has no sampler: read the GPU from NVML once, as the console's first sample
        does, so its ledger row gets the GPU and its price (the simulator's too)."""
        if self._gpu_probed:
            return
        self._gpu_probed = True
        if self.meter.gpu_model is None:
            from qwentui.telemetry.nvml import probe

            gpus = (await asyncio.to_thread(probe)).gpus
            if gpus:
                self.meter.set_gpu(gpus[0].name, getattr(gpus[0], "gpu_class", None) or None, count=len(gpus))
                return
        self._price_simulated(status, no_gpu=True)

    def _price_simulated(self, status: Any, *, no_gpu: bool) -> None:
        """The simulator on a box where NVML sees no GPU and no price is configured: bill it
        as a T4, labelled "T4 (SIMULATED)", so the demo's meter moves. A real engine, a set
        `cost.price_per_hour` or any GPU NVML reports never gets a made-up price."""
        if self.meter.gpu_model is not None or self.cfg.cost.price_per_hour > 0:
            return
        if self.cfg.engine.kind != "sim" or not getattr(status, "simulated", False) or not no_gpu:
            return
        from qwentui.cost.prices import table_price

        if table_price(self.cfg, SIM_GPU_CLASS) is not None:
            self.meter.set_gpu(f"{SIM_GPU_CLASS} (SIMULATED)", SIM_GPU_CLASS)

    def _heartbeat(self) -> None:
        now = self._clock()
        if self._beat_at is None or now - self._beat_at >= self.cfg.cost.heartbeat:
            self._beat_at = now
            self.meter.heartbeat()

    def _publish(self, status: Any, cost: CostSnapshot, idle: IdleStatus) -> RuntimeSnapshot:
        self._seq += 1
        stats = self.cache.stats() if self.cache is not None else None
        snap = RuntimeSnapshot(engine=status, telemetry=self._telemetry, cost=cost, idle=idle,
                               watchdog=self.watchdog_state, ledger_error=self.ledger_error,
                               cache=stats, action=self.last_action, seq=self._seq)
        self.latest = snap
        if self.on_snapshot is not None:
            self.on_snapshot(snap)
        return snap

    async def act(self, status: IdleStatus) -> ActionResult:
        """Run the idle/budget action once: stop the engine, close the row, maybe power off."""
        if self.on_action_start is not None:
            self.on_action_start(status)
        result = await self.runner.run(status.reason_action or "idle")
        self.watchdog.action_done()
        self.last_action = result
        if self.on_action_done is not None:
            self.on_action_done(result)
        self.poke()
        return result

    async def power_off(self, reason: str, command: Sequence[str], *, dry_run: bool) -> ActionResult:
        """A batch's `--then poweroff` on the guard's engine: stop it → close the row and the
        ledger → run `command`, once; the watchdog's own action stays armed for a restart."""
        runner = ActionRunner(self.supervisor, action="poweroff", poweroff_command=command, dry_run=dry_run,
                              close_ledger=lambda why: self._end_session(why, final=True), print_fn=self._say)
        self._action_task = asyncio.ensure_future(runner.run(reason))
        result = await asyncio.shield(self._action_task)
        self.last_action = result
        self.poke()
        return result

    def acting(self) -> bool:
        """An idle/budget action or a poweroff is under way."""
        return self._action_task is not None and not self._action_task.done()

    def _end_session(self, reason: str, *, final: bool = False) -> None:
        """ActionRunner's close_ledger: the row is final before any poweroff command runs."""
        if self.meter.engine_running:
            self.meter.engine_stopped(reason if reason in LEDGER_REASONS else "user")
        if (final or self.idle_cfg.action == "poweroff") and self.ledger is not None:
            self.activity.flush()
            self.ledger.close()  # flushed and closed: the box may go down next
            self.ledger, self.meter.ledger, self._ledger_final = None, None, True

    async def settle(self) -> None:
        """Wait for an idle/budget action under way (its poweroff included) to finish."""
        task = self._action_task
        if task is not None and not task.done():
            await asyncio.shield(task)

    # -- the end -----------------------------------------------------------------------

    async def close(self, reason: str = "user") -> None:
        """Stop the engine (unless attached or handed over with --keep-engine), close the
        ledger row with `reason` ("user", "signal", ...) and release everything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.poke()
        task = self._action_task
        if task is not None and not task.done():
            task.cancel()  # an action under way: closing cancels it
        status = self.supervisor.status
        try:
            if getattr(status, "running", False) and not getattr(status, "attached", False):
                await self.supervisor.stop(reason)
        except (QwentuiError, OSError) as exc:
            self._say(f"could not stop the engine: {exc}")
        finally:
            self.finish_ledger(reason)
            self._unsubscribe()
            await self._release()

    def finish_ledger(self, reason: str) -> None:
        """Close the open row (if any) with `reason` and the ledger file."""
        if self.meter.engine_running:  # kept running or attached: the row ends with us
            self.meter.engine_stopped(reason if reason in LEDGER_REASONS else "user")
        self.activity.flush()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = self.meter.ledger = None

    async def _release(self) -> None:
        if self.sampler is not None and hasattr(self.sampler, "aclose"):
            try:
                await self.sampler.aclose()
            except (OSError, RuntimeError):
                pass
        if self.cache is not None:
            await self.cache.aclose()
