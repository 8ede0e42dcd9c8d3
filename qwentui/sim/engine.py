"""The simulated scheduler: request slots, a FIFO waiting queue, token pacing and counters.

A request waits for one of `--max-running-requests` slots, spends `--sim-ttft` in "prefill",
then decodes at `--sim-tokens-per-s`. Tokens are released on a deadline schedule
(token i is due at start + i/rate), several per wake-up at high rates, so the average rate
holds regardless of timer granularity.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator, Sequence

from qwentui.sim.textgen import EOS_TOKEN_ID, THINK_END

log = logging.getLogger("sglang.sim")

GPU_TOTAL_GB = 22.05  # simulated free memory at start (an L4-class card)
WEIGHT_GB = 3.41  # Qwen3-1.7B in bf16
KV_BYTES_PER_TOKEN = 28 * 8 * 128 * 2 * 2  # layers * kv heads * head dim * (K, V) * bf16
MIN_TICK = 0.01


@dataclass(frozen=True)
class Resources:
    """Simulated memory budget; drives the start-up lines, /server_info and /metrics."""

    mem_fraction: float
    max_total_tokens: int
    max_running: int
    context_len: int
    chunked_prefill: int
    weight_gb: float = WEIGHT_GB
    kv_gb: float = 0.0


def resources(args) -> Resources:
    frac = args.mem_fraction_static or 0.835
    kv_gb = max(GPU_TOTAL_GB * frac - WEIGHT_GB - 0.6, 0.0)
    tokens = int(kv_gb * 1e9 / KV_BYTES_PER_TOKEN)
    if args.max_total_tokens:
        tokens = min(tokens, args.max_total_tokens)
    return Resources(mem_fraction=frac, max_total_tokens=tokens, max_running=args.max_running_requests or 64,
                     context_len=args.context_length, chunked_prefill=args.chunked_prefill_size or 4096,
                     kv_gb=round(kv_gb, 2))


@dataclass(eq=False)
class Job:
    """One generation: its token source, limits, and what happened to it."""

    tokens: Iterator[str]
    prompt_tokens: int
    max_new_tokens: int | None
    streaming: bool
    stop: Sequence[str] = ()
    completion_tokens: int = 0
    text: str = ""
    finish_reason: str | None = None
    matched_stop: int | str | None = None
    first_token_at: float | None = None
    think_end_at: int | None = None  # completion tokens up to and including </think>
    rid: str = ""
    abort_status: int | None = None  # set by abort(): None = graceful "abort" finish
    abort_message: str | None = None
    counted: bool = True  # tokenizer-side metrics (False for /health probes: log_metrics=False)

    emitted: int = 0  # chars of `text` already handed out (the rest may be a stop-string prefix)

    def next_piece(self) -> str:
        """Advance one token; returns the text that is safe to emit now ("" if none)."""
        if self.max_new_tokens is not None and self.completion_tokens >= self.max_new_tokens:
            self.finish_reason = "length"
            return self._flush()
        tok = next(self.tokens, None)
        self.completion_tokens += 1
        if tok is None:  # EOS: counted as an output token, emits no text
            self.finish_reason, self.matched_stop = "stop", EOS_TOKEN_ID
            return self._flush()
        if tok == THINK_END and self.think_end_at is None:
            self.think_end_at = self.completion_tokens
        self.text += tok
        return self._apply_stop() if self.stop else self._flush()

    def _flush(self) -> str:
        piece, self.emitted = self.text[self.emitted:], len(self.text)
        return piece

    def _apply_stop(self) -> str:
        """Trim at the first stop string; hold back a tail that may still become one."""
        start = max(self.emitted - max(len(s) for s in self.stop), 0)
        hits = [(self.text.find(s, start), s) for s in self.stop if s and self.text.find(s, start) >= 0]
        if hits:
            idx, stop = min(hits)
            self.text = self.text[:idx]
            self.finish_reason, self.matched_stop = "stop", stop
            return self._flush()
        hold = max((n for s in self.stop for n in range(1, len(s)) if self.text.endswith(s[:n])), default=0)
        piece = self.text[self.emitted:len(self.text) - hold]
        self.emitted += len(piece)
        return piece

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def aborted(self) -> bool:
        return self.abort_message is not None


class Aborted(Exception):
    """A job was aborted (by /abort_request or a SGLANG_REQ_*_TIMEOUT); carries the HTTP status."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.abort_message)
        self.status = job.abort_status
        self.message = job.abort_message or ""


class Engine:
    def __init__(self, res: Resources, *, tokens_per_s: float, ttft: float,
                 decode_log_interval: int = 40, on_finish: Callable[..., None] | None = None,
                 on_first_token: Callable[[bool, float], None] | None = None,
                 waiting_timeout: float = -1, running_timeout: float = -1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.res = res
        self.rate = tokens_per_s
        self.ttft = ttft
        self.decode_log_interval = max(decode_log_interval, 1)
        self.on_finish = on_finish
        self.on_first_token = on_first_token
        self.waiting_timeout, self.running_timeout = waiting_timeout, running_timeout
        self.clock = clock
        self.running = 0
        self._jobs: set[Job] = set()
        self._waiters: dict[asyncio.Future, Job] = {}  # insertion-ordered FIFO
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self.realtime_tokens = {"prefill_compute": 0, "prefill_cache": 0, "decode": 0}
        self._decode_logger: asyncio.Task | None = None
        self.served = 0  # generate requests seen (SGLang's SIGTERM drain needs one)
        self.gauges: dict[str, float] = {}  # what /metrics shows: published lazily, like SGLang
        self._published_at = -1e9
        self.publish(running=0)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        return self.running + self.queued

    def rids(self) -> list[str]:
        return [j.rid for j in [*self._jobs, *self._waiters.values()]]

    def used_tokens(self) -> int:
        return sum(j.prompt_tokens + j.completion_tokens for j in list(self._jobs))

    def gen_throughput(self, window: float = 2.0) -> float:
        now = self.clock()
        while self._recent and self._recent[0][0] < now - window:
            self._recent.popleft()
        return round(sum(n for _, n in self._recent) / window, 2)

    # -- slots -----------------------------------------------------------------------------
    async def _acquire(self, job: Job) -> None:
        if self.running < self.res.max_running and not self._waiters:
            self.running += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters[fut] = job
        timer = self._timer(self.waiting_timeout, job, "Request waiting timeout reached.")
        try:
            await fut  # the releaser hands its slot over (running stays the same)
        except asyncio.CancelledError:
            if self._waiters.pop(fut, None) is None and fut.done() and not fut.cancelled():
                self._release()
            raise
        finally:
            if timer:
                timer.cancel()

    def _release(self) -> None:
        for fut in list(self._waiters):
            del self._waiters[fut]
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1

    def _timer(self, seconds: float, job: Job, message: str) -> asyncio.TimerHandle | None:
        if seconds <= 0:
            return None
        return asyncio.get_running_loop().call_later(seconds, self.abort_job, job, 503, message)

    def abort_job(self, job: Job, status: int | None = None, message: str = "Abort request.") -> None:
        if job.done or job.aborted:
            return
        job.abort_status, job.abort_message = status, message
        for fut, waiting in list(self._waiters.items()):
            if waiting is job:
                del self._waiters[fut]
                if not fut.done():
                    fut.set_exception(Aborted(job))

    def abort(self, rid: str | None = None, abort_all: bool = False) -> int:
        """/abort_request: graceful abort (finish_reason "abort") of one rid or everything."""
        jobs = [j for j in [*self._jobs, *self._waiters.values()] if abort_all or j.rid == rid]
        for job in jobs:
            self.abort_job(job)
        return len(jobs)

    # -- lazy gauges -----------------------------------------------------------------------
    IDLE_REFRESH_S = 30.0

    def publish(self, *, running: int | None = None, throughput: float | None = None) -> None:
        """Set the scheduler gauges, as SGLang does only at a prefill report, every
        `--decode-log-interval` decode steps and on its idle check
        (srt/managers/scheduler_components/metrics_reporter.py)."""
        used = self.used_tokens()
        self.gauges = {"running": self.running if running is None else running, "queued": self.queued,
                       "used_tokens": used, "token_usage": round(used / self.res.max_total_tokens, 4),
                       "gen_throughput": self.gauges.get("gen_throughput", 0.0) if throughput is None else throughput,
                       "busy": 1.0 if self.running else 0.0}
        self._published_at = self.clock()

    def idle_check(self) -> None:
        """SGLang's idle self-check: when nothing runs, republish if the running gauge
        disagrees, and at most every 30 s otherwise (gen_throughput then falls to 0)."""
        if self.running or self.queued:
            return
        if self.clock() - self._published_at >= self.IDLE_REFRESH_S:
            self.publish(throughput=0.0)
        elif self.gauges["running"] != 0:
            self.publish()

    # -- logs ------------------------------------------------------------------------------
    def _log_prefill(self, job: Job) -> None:
        self.publish(running=self.running - 1)  # the prefill report counts the batch before it
        usage = self.used_tokens() / self.res.max_total_tokens
        log.info(f"Prefill batch, #new-seq: 1, #new-token: {job.prompt_tokens}, #cached-token: 0, "
                 f"token usage: {usage:.2f}, #running-req: {self.running - 1}, #queue-req: {self.queued}, "
                 f"#pending-token: 0, cuda graph: False, "
                 f"input throughput (token/s): {job.prompt_tokens / max(self.ttft, 0.001):.2f}")

    async def _decode_log_loop(self) -> None:
        period = max(self.decode_log_interval / self.rate, 0.25)  # keep fast test runs readable
        while self.running:
            await asyncio.sleep(period)
            if not self.running:
                break
            usage = self.used_tokens() / self.res.max_total_tokens
            self.publish(throughput=self.gen_throughput())
            log.info(f"Decode batch, #running-req: {self.running}, #token: {self.used_tokens()}, "
                     f"token usage: {usage:.2f}, cuda graph: True, "
                     f"gen throughput (token/s): {self.gen_throughput():.2f}, #queue-req: {self.queued}")
        self._decode_logger = None

    # -- generation ------------------------------------------------------------------------
    async def run(self, job: Job) -> AsyncIterator[str]:
        """Yield text increments (never empty) until the job finishes; the slot is freed on exit.

        Raises Aborted only for aborts that carry an HTTP status; a graceful abort just ends
        the stream with finish_reason "abort"; a cancelled consumer (client gone) counts as abort.
        """
        start = self.clock()
        self.served += 1
        acquired, timer = False, None
        try:
            await self._acquire(job)
            acquired = True
            self._jobs.add(job)
            timer = self._timer(self.running_timeout, job, "Request running timeout reached.")
            async for piece in self._generate(job, start):
                yield piece
        except Aborted:
            job.finish_reason = "abort"
            if job.abort_status:
                raise
        finally:
            if timer:
                timer.cancel()
            if acquired:
                self._jobs.discard(job)
                self._release()
            if job.finish_reason is None:
                job.finish_reason = "abort"
            if self.on_finish:
                self.on_finish(job, self.clock() - start, job.finish_reason == "abort")

    async def _generate(self, job: Job, start: float) -> AsyncIterator[str]:
        self._log_prefill(job)
        self.realtime_tokens["prefill_compute"] += job.prompt_tokens
        if self._decode_logger is None:
            self._decode_logger = asyncio.get_running_loop().create_task(self._decode_log_loop())
        await asyncio.sleep(self.ttft)
        async for piece in self._decode(job):
            if job.first_token_at is None:
                job.first_token_at = self.clock()
                if self.on_first_token:
                    self.on_first_token(job.streaming, job.first_token_at - start)
            yield piece

    async def _decode(self, job: Job) -> AsyncIterator[str]:
        t0, base = self.clock(), job.completion_tokens
        while not job.done:
            if job.aborted:
                raise Aborted(job)
            done_here = job.completion_tokens - base
            due = max(int((self.clock() - t0) * self.rate) + 1 - done_here, 1)
            pieces = []
            for _ in range(due):
                piece = job.next_piece()
                if piece:
                    pieces.append(piece)
                if job.done:
                    break
            self._count(job.completion_tokens - base - done_here)
            if pieces:
                yield "".join(pieces)
            if not job.done:
                wait = t0 + (job.completion_tokens - base) / self.rate - self.clock()
                await asyncio.sleep(max(wait, MIN_TICK) if wait > 0 else 0)

    def _count(self, n: int) -> None:
        if n:
            self.realtime_tokens["decode"] += n
            self._recent.append((self.clock(), n))

    async def probe(self) -> bool:
        """/health's 1-token generation (log_metrics=False: tokenizer counters do not move)."""
        self.served += 1
        await asyncio.sleep(1.0)
        self.realtime_tokens["prefill_compute"] += 1
        self.realtime_tokens["decode"] += 1
        if not self.running:
            log.info("Prefill batch, #new-seq: 1, #new-token: 1, #cached-token: 0, token usage: 0.00, "
                     "#running-req: 0, #queue-req: 0, #pending-token: 0, cuda graph: False, "
                     "input throughput (token/s): 0.00")
        return True
