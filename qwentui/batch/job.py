"""`qwentui batch` end to end: engine, runner, progress, ledger, summary, then-action.

The seed's `python generate_reports.py && shutdown -h now`, with the engine lifecycle
included: attach to a given server, reuse one already answering on the configured
port, or start one (and stop it after, unless `--then keep`). `--then poweroff` runs
`idle.poweroff_command` only after the engine stopped and the ledger session is closed;
it runs when the batch ended on its own (also with failed requests: their lines say
so and `--resume` redoes them) and never after Ctrl+C.
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
                         keep: bool = False) -> EngineHandle:
    """Attach to `attach`, reuse an engine already ready on the configured port, or start one."""
    if attach:
        return await _attach(cfg, attach, "attached")
    url = f"http://{_connect_host(cfg.engine.host)}:{cfg.engine.port}"
    if await _answers_ready(url, cfg.engine.api_key):
        say(f"using the engine already running at {url} (it is left running)")
        return await _attach(cfg, url, "running")
    from qwentui.engine import Supervisor

    sup = Supervisor(cfg, keep_engine=keep)
    label = " (SIMULATED)" if cfg.engine.kind == "sim" else ""
    say(f"starting the engine: {cfg.engine.kind}{label} {cfg.engine.model} on port {cfg.engine.port}")
    started = time.time()
    try:
        await sup.start()
    except BaseException:
        await asyncio.shield(_stop_quietly(sup, "user"))
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
    """Price, the box time this job used, and (for an engine we own) the ledger session."""

    def __init__(self, cfg: Config, engine: EngineHandle, say: Callable[[str], Any],
                 clock: Callable[[], float] = time.time) -> None:
        from qwentui.cost.prices import price_per_hour

        self.cfg, self.say, self._clock = cfg, say, clock
        self.gpu_model, self.gpu_class = _gpu()
        self.price: Decimal | None = price_per_hour(cfg, self.gpu_class)
        self.billing = Billing.from_config(cfg)
        self.currency = cfg.cost.currency
        self.since = engine.started_at or clock()
        self.ledger: Any = None
        self.session: int | None = None
        if engine.owned:
            self._open(engine)

    def _open(self, engine: EngineHandle) -> None:
        from qwentui.cost.ledger import Ledger, path_for

        try:
            self.ledger = Ledger(path_for(engine.kind))
            self.ledger.recover()
            self.session = self.ledger.open_session(
                self.gpu_model or "", self.price, engine.kind if engine.kind in ("sglang", "sim") else "sglang",
                gpu_class=self.gpu_class or "", currency=self.currency, at=self.since,
                billing=self.billing)
            status = getattr(engine.supervisor, "status", None)
            launch, ready = getattr(status, "started_at", None), getattr(status, "ready_at", None)
            if launch is not None and ready is not None:
                self.ledger.add_engine_start(launch, ready, kind=self.kind(engine))
        except QwentuiError as exc:
            self.say(f"warning: ledger unavailable, this batch's cost is not recorded: {exc.message}")
            if self.ledger is not None:
                self.ledger.close()
            self.ledger, self.session = None, None

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

    def heartbeat(self, p: Progress) -> None:
        """Counters so far (requests = answers the engine produced); kill -9 loses one interval."""
        if self.session is None:
            return
        try:
            self.ledger.heartbeat(self.session, p.prompt_tokens, p.completion_tokens, p.ok - p.cached)
        except QwentuiError as exc:
            self.say(f"warning: ledger heartbeat failed: {exc.message}")

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
        if self.ledger is None:
            return
        try:
            if self.session is not None:
                self.ledger.close_session(self.session, reason)
        finally:
            self.ledger.close()
            self.ledger, self.session = None, None


def _gpu() -> tuple[str | None, str | None]:
    from qwentui.telemetry.nvml import detect_gpu_name, gpu_class

    name = detect_gpu_name()
    return name, (gpu_class(name) if name else None)


# ------------------------------------------------------------------ the job


class BatchJob:
    """One `qwentui batch` invocation. `run()` returns the exit code."""

    def __init__(self, cfg: Config, opts: JobOptions, *, out: TextIO | None = None, err: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.cfg, self.opts = cfg, opts
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tty = self.err.isatty() if tty is None else tty
        self.runner: BatchRunner | None = None
        self.interrupted = False
        self._batch_running = False
        self._main: asyncio.Task | None = None

    def say(self, text: str) -> None:
        print(f"qwentui: {text}", file=self.err, flush=True)

    async def run(self) -> int:
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
        engine = await acquire_engine(self.cfg, self.opts.attach, self.say, keep=self.opts.then == "keep")
        book = CostBook(self.cfg, engine, self.say)
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
                                  cache=cache, engine_problem=engine.problem)
        printer = ProgressPrinter(self.err, tty=self.tty, price=book.price, currency=book.currency,
                                  cost=book.cost)
        ticker = asyncio.create_task(self._tick(printer, book))
        self._batch_running = True
        began = time.time()
        try:
            result = await self.runner.run()
        finally:
            book.busy(began, time.time())
            self._batch_running = False
            ticker.cancel()
            printer.done(self.runner.progress())
            await sender.aclose()
            await cache.aclose()
        book.record(result)
        return result

    async def _tick(self, printer: ProgressPrinter, book: CostBook) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(printer.interval)
            progress = self.runner.progress()
            printer.show(progress)
            if time.monotonic() - last_beat >= self.cfg.cost.heartbeat:
                book.heartbeat(progress)
                last_beat = time.monotonic()

    async def _finish(self, result: BatchResult, engine: EngineHandle, book: CostBook) -> int:
        then = self.opts.then
        stopped_early = result.interrupted or self.interrupted
        if stopped_early:
            then = "keep" if then == "keep" else "stop"  # never power off after Ctrl+C
        reason = "signal" if stopped_early else "crash" if engine.problem() else "batch-done"
        if not engine.owned and engine.supervisor is not None:
            await engine.supervisor.stop(reason)  # attached: only stops watching, never the server
        if then == "poweroff" or (then == "stop" and engine.owned):
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


class _signals:
    """SIGINT/SIGTERM call `handler` inside the loop (clean stop) instead of raising."""

    def __init__(self, handler: Callable[[], None]) -> None:
        self.handler = handler
        self.installed: list[int] = []

    def __enter__(self) -> "_signals":
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
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
