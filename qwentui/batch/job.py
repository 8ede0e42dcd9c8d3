"""`qwentui batch` end to end: engine, runner, progress, ledger, summary, then-action.

The seed's `python generate_reports.py && shutdown -h now`, with the engine lifecycle
included: attach to a given server, reuse one already answering on the configured
port, or start one (and stop it after, unless `--then keep`). `--then poweroff` runs
`idle.poweroff_command` only after the engine stopped and the ledger session is closed;
it runs when the batch ended on its own (also with failed requests: their lines say
so and `--resume` redoes them) and never after Ctrl+C. On a guard's engine the guard
does it: `stop` stops its engine (the guard stays), `poweroff` is its stop → close its
ledger row → power off (POST /guard/poweroff).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from qwentui.batch.runner import BatchOptions, BatchResult, BatchRunner, Progress, Sender
from qwentui.batch.jsonl import OutputWriter, read_input
from qwentui.batch.progress import ProgressPrinter, summary_lines
from qwentui.config import Config
from qwentui.cost.billing import Billing
from qwentui.errors import QwentuiError


@dataclass(frozen=True)
class JobOptions:
    input: Path
    output: Path
    concurrency: int = 8
    thinking: bool = True
    max_tokens: int | None = 4096
    then: str = "stop"  # "keep" | "stop" | "poweroff"
    attach: str | None = None
    resume: bool = False
    overwrite: bool = False
    cache: bool = False
    dry_run: bool = False
    retries: int = 3
    timeout: float = 600.0


@dataclass
class EngineHandle:
    base_url: str
    api_key: str
    model: str
    kind: str  # "sglang" | "sim" | "attached" | "running"
    owned: bool  # started by this batch: stop it after
    supervisor: Any = None
    started_at: float | None = None
    guard: Any = None  # GuardClient when the running guard's engine is used

    @property
    def simulated(self) -> bool:
        status = getattr(self.supervisor, "status", None)
        return self.kind == "sim" or bool(getattr(status, "simulated", False))

    def problem(self) -> str | None:
        """Why the engine cannot answer any more (crashed/stopped), for the runner's circuit."""
        status = getattr(self.supervisor, "status", None)
        if status is None or status.running:
            return None
        return status.error or f"engine {status.state.value}"


# ------------------------------------------------------------------ engine


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def _answers_ready(base_url: str, api_key: str) -> bool:
    from qwentui.chat.client import ChatClient

    async with ChatClient(base_url, api_key=api_key, timeout=3.0, connect_timeout=1.0) as client:
        return await client.ready()


async def _attach(cfg: Config, url: str, kind: str) -> EngineHandle:
    from qwentui.engine import Supervisor

    sup = Supervisor.attach(url, cfg.engine.api_key, cfg=cfg)
    await sup.start()  # probes /ready and /v1/models; raises with a hint when unreachable
    return EngineHandle(sup.base_url, sup.api_key, sup.served_model, kind, owned=False, supervisor=sup)


async def acquire_engine(cfg: Config, attach: str | None, say: Callable[[str], Any], *,
                         keep: bool = False, on_start: Callable[[Any], Any] | None = None) -> EngineHandle:
    """Attach to `attach`, reuse an engine already ready on the configured port, or start one
    (`on_start(supervisor)` is called just before it starts: its bill starts there)."""
    if attach:
        return await _attach(cfg, attach, "attached")
    from qwentui.runtime.client import GuardClient

    guard = GuardClient(kind=cfg.engine.kind)
    if await asyncio.to_thread(guard.alive):  # the guard's engine: one engine per GPU, kept alive meanwhile
        found = await asyncio.to_thread(guard.engine_ready, cfg.engine.startup_timeout)
        say(f"using the guard's engine at {found['base_url']} (the guard keeps running it)")
        return EngineHandle(found["base_url"], found["api_key"], found["model"], "guard", owned=False,
                            guard=guard)
    url = f"http://{_connect_host(cfg.engine.host)}:{cfg.engine.port}"
    if await _answers_ready(url, cfg.engine.api_key):
        say(f"using the engine already running at {url} (it is left running)")
        return await _attach(cfg, url, "running")
    from qwentui.engine import Supervisor

    sup = Supervisor(cfg, keep_engine=keep)
    label = " (SIMULATED)" if cfg.engine.kind == "sim" else ""
    say(f"starting the engine: {cfg.engine.kind}{label} {cfg.engine.model} on port {cfg.engine.port}")
    started = time.time()
    if on_start is not None:
        on_start(sup)
    try:
        await sup.start()
    except BaseException as exc:
        reason = "signal" if isinstance(exc, asyncio.CancelledError) else "crash"
        await asyncio.shield(_stop_quietly(sup, reason))
        raise
    say(f"engine ready after {time.time() - started:.0f}s at {sup.base_url}")
    return EngineHandle(sup.base_url, sup.api_key, sup.served_model, cfg.engine.kind, owned=True,
                        supervisor=sup, started_at=started)


async def _stop_quietly(sup: Any, reason: str) -> None:
    try:
        await sup.stop(reason)
    except QwentuiError:
        pass


# ------------------------------------------------------------------ money and ledger


class CostBook:
    """Price, the box time this job used, and (for an engine we start) the ledger session.

    The session row is written when our engine starts (not when it is ready) and its
    heartbeat comes every second at first, then every quarter of the time so far, up to
    `cost.heartbeat`, so a kill -9 early in the run is recovered with the minutes it ran."""

    def __init__(self, cfg: Config, say: Callable[[str], Any], clock: Callable[[], float] = time.time) -> None:
        from qwentui.cost.prices import box_price

        self.cfg, self.say, self._clock = cfg, say, clock
        self.gpu_model, self.gpu_class, count = _gpu(cfg)
        self.price: Decimal | None = box_price(cfg, self.gpu_class, count)
        self.billing = Billing.from_config(cfg)
        self.currency = cfg.cost.currency
        self.since = clock()
        self.ledger: Any = None
        self.session: int | None = None
        self.progress: Callable[[], Progress | None] = lambda: None
        self._beats: asyncio.Task | None = None
        self._beat_failed = False

    def engine_starting(self, kind: str) -> None:
        """Our engine is about to start: the bill (and the ledger row) starts now."""
        self.since = self._clock()
        from qwentui.cost.ledger import Ledger, path_for

        try:
            self.ledger = Ledger(path_for(kind))
            self.ledger.recover()
            self.session = self.ledger.open_session(
                self.gpu_model or "", self.price, kind if kind in ("sglang", "sim") else "sglang",
                gpu_class=self.gpu_class or "", currency=self.currency, at=self.since, billing=self.billing)
        except QwentuiError as exc:
            self.say(f"warning: ledger unavailable, this session is not recorded: {exc.message}")
            if self.ledger is not None:
                self.ledger.close()
            self.ledger, self.session = None, None
            return
        self._beats = asyncio.ensure_future(self._heartbeats())

    def using(self, engine: EngineHandle) -> None:
        """The engine is ready. Ours: record its start-up interval on the row. Someone else's:
        this job's box time starts now; no ledger row (not our bill)."""
        if not engine.owned:
            self.since = self._clock()
            return
        status = getattr(engine.supervisor, "status", None)
        launch, ready = getattr(status, "started_at", None), getattr(status, "ready_at", None)
        if self.session is not None and launch is not None and ready is not None:
            try:
                self.ledger.add_engine_start(launch, ready, kind=self.kind(engine))
            except QwentuiError as exc:
                self.say(f"warning: engine start-up not recorded: {exc.message}")

    async def _heartbeats(self) -> None:
        every = max(1.0, self.cfg.cost.heartbeat)
        while self.session is not None:
            # a quarter of the time so far (1 s at least): kill -9 loses at most ~20% of a short run
            await asyncio.sleep(min(max(1.0, self.elapsed() / 4), every))
            self.heartbeat(self.progress())

    @staticmethod
    def kind(engine: EngineHandle) -> str:
        return engine.kind if engine.kind in ("sglang", "sim") else "sglang"

    def elapsed(self) -> float:
        return max(0.0, self._clock() - self.since)

    def busy(self, start: float, end: float) -> None:
        """The batch ran in [start, end): one busy interval of the activity record."""
        if self.session is None:
            return
        try:
            self.ledger.add_activity(start, max(start, end), "batch")
        except QwentuiError as exc:
            self.say(f"warning: batch activity not recorded: {exc.message}")

    def cost(self) -> Decimal | None:
        """Box time this job used so far (since engine start when we started it) × price,
        billed like the ledger row (cost.granularity, cost.minimum)."""
        return self.billing.cost(self.price, self.since, self._clock())

    def heartbeat(self, p: Progress | None) -> None:
        """Counters so far (requests = answers the engine produced); kill -9 loses one interval."""
        if self.session is None:
            return
        try:
            if p is None:
                self.ledger.heartbeat(self.session)
            else:
                self.ledger.heartbeat(self.session, p.prompt_tokens, p.completion_tokens, p.ok - p.cached)
        except QwentuiError as exc:
            if not self._beat_failed:  # once, not every beat
                self.say(f"warning: ledger heartbeat failed: {exc.message}")
            self._beat_failed = True
        else:
            self._beat_failed = False

    def record(self, result: BatchResult) -> None:
        if self.session is None:
            return
        try:
            self.ledger.heartbeat(self.session, result.prompt_tokens, result.completion_tokens,
                                  result.ok - result.cached)
            if result.cache.hits:
                self.ledger.add_cache_savings(self.session, result.cache.hits, result.cache.tokens_saved)
        except QwentuiError as exc:
            self.say(f"warning: ledger update failed: {exc.message}")

    def close_ledger(self, reason: str = "batch-done") -> None:
        if self._beats is not None:
            self._beats.cancel()
            self._beats = None
        if self.ledger is None:
            return
        try:
            if self.session is not None:
                self.ledger.close_session(self.session, reason)
        except QwentuiError as exc:
            self.say(f"warning: could not close this session in the ledger: {exc.message}")
        finally:
            self.ledger.close()
            self.ledger, self.session = None, None


def _gpu(cfg: Config) -> tuple[str | None, str | None, int]:
    """First GPU's name and class, and how many GPUs the box has (each one bills); the
    simulator on a box without one (and no configured price) is priced as the console
    prices it: "T4 (SIMULATED)"."""
    from qwentui.cost.prices import table_price
    from qwentui.runtime.core import SIM_GPU_CLASS
    from qwentui.telemetry.nvml import gpu_class, probe

    gpus = probe().gpus
    name = gpus[0].name if gpus else None
    if len(gpus) > 1:
        return f"{len(gpus)}x {name}", gpu_class(name), len(gpus)
    if name:
        return name, gpu_class(name), 1
    if cfg.engine.kind == "sim" and not cfg.cost.price_per_hour > 0 and table_price(cfg, SIM_GPU_CLASS):
        return f"{SIM_GPU_CLASS} (SIMULATED)", SIM_GPU_CLASS, 1
    return None, None, 1


# ------------------------------------------------------------------ the job


class BatchJob:
    """One `qwentui batch` invocation. `run()` returns the exit code."""

    def __init__(self, cfg: Config, opts: JobOptions, *, out: TextIO | None = None, err: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.cfg, self.opts = cfg, opts
        self.out, self.err = SafeStream(out or sys.stdout), SafeStream(err or sys.stderr)
        self.tty = self.err.isatty() if tty is None else tty
        self.runner: BatchRunner | None = None
        self.interrupted = False
        self._batch_running = False
        self._main: asyncio.Task | None = None

    def say(self, text: str) -> None:
        print(f"qwentui: {text}", file=self.err, flush=True)

    async def run(self) -> int:
        if self.opts.then == "poweroff":  # a command that cannot run fails now, not after the work
            from qwentui.idle.actions import check_poweroff

            note = check_poweroff(self.cfg.idle.poweroff_command)
            if note:
                self.say(note)
        items = read_input(self.opts.input)
        writer = OutputWriter(self.opts.output, resume=self.opts.resume, overwrite=self.opts.overwrite)
        try:
            todo = sum(1 for i in items if i.key not in writer.done)
            if todo == 0:
                self.say(f"nothing to do: all {len(items)} ids are already in {self.opts.output}")
                return 0
            self._main = asyncio.current_task()
            with _signals(self._on_signal):
                return await self._with_engine(items, writer)
        except asyncio.CancelledError:  # Ctrl+C twice, or during engine start-up / the then-action
            if self._main is not None:
                self._main.uncancel()
            self.say("interrupted; finished answers are saved, continue with --resume")
            return 130
        finally:
            writer.close()

    def _on_signal(self) -> None:
        """First Ctrl+C during the batch: clean stop. Otherwise: cancel (cleanup still runs)."""
        if self._batch_running and not self.interrupted:
            self.interrupted = True
            print("", file=self.err)
            self.say("stopping: requests in flight are abandoned, finished ones are saved")
            self.runner.stop()
        elif self._main is not None:
            self.interrupted = True
            self._main.cancel()

    async def _with_engine(self, items, writer) -> int:
        book = CostBook(self.cfg, self.say)
        book.progress = lambda: self.runner.progress() if self.runner is not None else None
        starting: list[Any] = []

        def on_start(sup: Any) -> None:
            starting.append(sup)
            book.engine_starting(self.cfg.engine.kind)

        try:
            engine = await acquire_engine(self.cfg, self.opts.attach, self.say, keep=self.opts.then == "keep",
                                          on_start=on_start)
        except BaseException:  # start-up failed or was interrupted: the row says which
            timed_out = bool(starting) and starting[0].status.stop_reason == "timeout"
            book.close_ledger("signal" if self.interrupted else "timeout" if timed_out else "crash")
            raise
        book.using(engine)
        result = None
        try:
            result = await self._run_batch(items, writer, engine, book)
        finally:
            writer.sync()
            if result is None:  # an unexpected error: never leave an engine we started running
                await self._cleanup(engine, book)
        for line in summary_lines(result, engine=engine, book=book, output=self.opts.output):
            print(line, file=self.out, flush=True)
        return await self._finish(result, engine, book)

    async def _run_batch(self, items, writer, engine: EngineHandle, book: CostBook) -> BatchResult:
        from qwentui.cache import open_cache

        cache = await open_cache(self.cfg.cache, enabled=self.opts.cache)
        if cache.stats().warning:
            self.say(f"warning: {cache.stats().warning}; the batch continues without it")
        options = BatchOptions(concurrency=self.opts.concurrency, thinking=self.opts.thinking,
                               max_tokens=self.opts.max_tokens, retries=self.opts.retries,
                               timeout=self.opts.timeout)
        sender = Sender(engine.base_url, api_key=engine.api_key, model=engine.model, timeout=self.opts.timeout)
        self.runner = BatchRunner(items, writer, sender.send, model=engine.model, options=options,
                                  cache=cache, engine_problem=engine.problem,
                                  warn=lambda text: self.say(f"warning: {text}"))
        printer = ProgressPrinter(self.err, tty=self.tty, price=book.price, currency=book.currency,
                                  cost=book.cost)
        ticker = asyncio.create_task(self._tick(printer, book))
        lease = asyncio.create_task(engine.guard.hold_activity()) if engine.guard is not None else None
        self._batch_running = True
        began = time.time()
        try:
            result = await self.runner.run()
        finally:
            book.busy(began, time.time())
            self._batch_running = False
            ticker.cancel()
            if lease is not None:
                lease.cancel()
            printer.done(self.runner.progress())
            await sender.aclose()
            await cache.aclose()
        book.record(result)
        return result

    async def _tick(self, printer: ProgressPrinter, book: CostBook) -> None:
        while True:
            await asyncio.sleep(printer.interval)
            printer.show(self.runner.progress())

    async def _finish(self, result: BatchResult, engine: EngineHandle, book: CostBook) -> int:
        then = self.opts.then
        stopped_early = result.interrupted or self.interrupted
        if stopped_early:
            then = "keep" if then == "keep" else "stop"  # never power off after Ctrl+C
        reason = "signal" if stopped_early else "crash" if engine.problem() else "batch-done"
        if not engine.owned and engine.supervisor is not None:
            await engine.supervisor.stop(reason)  # attached: only stops watching, never the server
        if engine.guard is not None:  # the guard's engine, row and box: it acts, never after Ctrl+C
            book.close_ledger(reason)
            ok = stopped_early or then == "keep" or await self._guard_then(then, engine.guard, reason)
        elif then == "poweroff" or (then == "stop" and engine.owned):
            ok = await self._then_action(then, engine, book, reason)
        else:
            book.close_ledger(reason)
            if engine.owned:
                self._keep(engine)
            ok = True
        if result.interrupted or self.interrupted:
            self.say(f"interrupted: {result.not_done} requests not done; continue with: "
                     f"qwentui batch {self.opts.input} -o {self.opts.output} --resume")
            return 130
        if result.failed:
            retry = (f" ({result.retryable_failed} can be retried with --resume)"
                     if result.retryable_failed else "")
            self.say(f"{result.failed} of {result.requests} requests failed: see the error lines "
                     f"in {self.opts.output}{retry}")
            return 1
        return 0 if ok else 1

    async def _then_action(self, then: str, engine: EngineHandle, book: CostBook, reason: str) -> bool:
        from qwentui.idle.actions import ActionRunner

        runner = ActionRunner(engine.supervisor if engine.owned else None,
                              action="poweroff" if then == "poweroff" else "stop-engine",
                              poweroff_command=self.cfg.idle.poweroff_command,
                              dry_run=self.opts.dry_run or self.cfg.idle.dry_run,
                              close_ledger=book.close_ledger,
                              print_fn=lambda text: print(text, file=self.out, flush=True))
        outcome = await runner.run(reason)
        self.say(outcome.message)
        if outcome.hint:
            self.say(f"hint: {outcome.hint}")
        return outcome.ok

    async def _guard_then(self, then: str, guard: Any, reason: str) -> bool:
        """`--then stop|poweroff` on the guard's engine: the guard stops it (and closes its ledger
        row, and runs the poweroff command) itself; one line says what happened."""
        timeout = self.cfg.engine.stop_grace + 30
        try:
            if then == "stop":
                state = await asyncio.to_thread(guard.stop_engine, reason, timeout)
                after = ("the guard keeps running: 'qwentui' or F5 starts it again" if state and state["guard"]["stays"]
                         else "the foreground 'qwentui serve' ends with it")
                why = state["engine"]["stop_reason"] if state else None
                self.say(f"the guard's engine stopped ({why or reason}); {after}")
                return True
            answer = await asyncio.to_thread(guard.power_off, reason, self.cfg.idle.poweroff_command,
                                             dry_run=self.opts.dry_run or self.cfg.idle.dry_run,
                                             timeout=timeout + 90)
        except QwentuiError as exc:
            what = "the guard's engine was not stopped" if then == "stop" else "the box was not powered off"
            self.say(f"{what}: {exc.message}")
            return False
        return self._powered_off(answer, reason)

    def _powered_off(self, answer: dict, reason: str) -> bool:
        if not answer.get("ok"):
            self.say(f"the guard could not power off: {answer.get('message') or answer.get('error')}")
        else:
            self.say(f"the guard stopped its engine ({reason}), closed its ledger row; {answer.get('message')}")
        if answer.get("hint"):
            self.say(f"hint: {answer['hint']}")
        return bool(answer.get("ok"))

    def _keep(self, engine: EngineHandle) -> None:
        try:
            pid = engine.supervisor.detach()
        except QwentuiError as exc:
            self.say(f"warning: {exc.message}")
            return
        self.say(f"engine left running at {engine.base_url} (pid {pid}, --then keep); it bills until "
                 f"you stop it: kill {pid}")

    async def _cleanup(self, engine: EngineHandle, book: CostBook) -> None:
        reason = "signal" if self.interrupted else "crash" if engine.problem() else "batch-done"
        if engine.owned:
            await _stop_quietly(engine.supervisor, reason)
        book.close_ledger(reason)


class SafeStream:
    """stdout/stderr that a dropped SSH session cannot turn into an exception: after a hang-up
    writes fail with EIO/EPIPE, and the batch must still stop the engine and save its output."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            return 0

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


class _signals:
    """SIGINT/SIGTERM/SIGHUP call `handler` inside the loop (clean stop) instead of raising;
    SIGHUP is a dropped SSH session: the same clean stop as SIGTERM."""

    def __init__(self, handler: Callable[[], None]) -> None:
        self.handler = handler
        self.installed: list[int] = []

    def __enter__(self) -> "_signals":
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self.handler)
                self.installed.append(sig)
            except (RuntimeError, ValueError):  # also covers loops without signal support
                pass  # not the main thread / not supported: default handling applies
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.installed:
            loop.remove_signal_handler(sig)
