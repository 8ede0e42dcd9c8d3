"""Process lifecycle of the simulator: start-up phases, scheduler child, uvicorn, signals (§8).

Timeline: phase lines paced by `--sim-cold-start` with the port closed → uvicorn binds
(`/health` 503, `/v1/models` 200) → warm-up generate → `The server is fired up and ready to
roll!`. SIGTERM is then seen by SGLang's sigterm watchdog on its next 5 s tick, which drains
in-flight requests (skipped with SGL_FORCE_SHUTDOWN=1 or when UnHealthy), sends ShutdownReq,
waits up to 15 s for the scheduler to free GPU memory and exits 0
(srt/managers/tokenizer_manager.py: sigterm_watchdog). SIGQUIT (a child failed) kills the
tree and this process with SIGKILL, as SGLang's kill_process_tree does.

Like SGLang it leaves its ZMQ socket files in the temp dir and a /dev/shm load snapshot, and
its Prometheus multiprocess dir after a SIGKILL (engine/rundir.py removes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from typing import Sequence

from qwentui.sim import args as simargs
from qwentui.sim import logs, phases, textgen
from qwentui.sim.engine import Engine, Job, resources
from qwentui.sim.metrics import SimMetrics, disable_created_series
from qwentui.sim.server import SimState, build_app

log = logging.getLogger("sglang.sim")
DRAIN_POLL_S = 5.0  # SGLang's sigterm_watchdog sleeps 5 s per round
SCHEDULER_EXIT_WAIT_S = 15.0  # ...and waits this long for the scheduler after ShutdownReq
ZMQ_SOCKETS = 5  # PortArgs: tokenizer, scheduler input, detokenizer, rpc, metrics
SIM_BANNER = "qwentui simulator: SIMULATED engine, no model is loaded (qwentui.sim stands in for SGLang)"


def _env_float(name: str, default: float = -1.0) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Scheduler:
    """The `sglang::scheduler` child plus SGLang's SubprocessWatchdog (1 s poll)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.stopping = False
        self._thread = threading.Thread(target=self._watch, name="SubprocessWatchdog", daemon=True)
        self._thread.start()

    @classmethod
    def spawn(cls, a, crash_after: float | None) -> "Scheduler":
        oom = "-"
        if a.sim_oom:
            oom = "kv" if (a.mem_fraction_static or 0.835) < 0.5 else "graph"
        argv = [sys.executable, "-m", "qwentui.sim.scheduler", "sglang::scheduler", str(os.getpid()), oom,
                str(a.mem_fraction_static or 0.835), "-" if crash_after is None else str(crash_after),
                str(a.sim_scheduler_exit)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                close_fds=True)
        return cls(proc)

    def _watch(self) -> None:
        while not self.check():
            time.sleep(1.0)

    def check(self) -> bool:
        """True when the child died unexpectedly; then log and SIGQUIT ourselves, as SGLang does."""
        code = self.proc.poll()
        if code is None or self.stopping:
            return self.stopping
        self.stopping = True
        log.error(f"Subprocess scheduler_0 (pid={self.proc.pid}) crashed with exit code {code}. "
                  "Triggering SIGQUIT for cleanup...")
        os.kill(os.getpid(), signal.SIGQUIT)
        return True

    def phase(self, name: str, timeout: float = 10.0) -> bool:
        """Tell the child which start-up phase runs; it answers "ok" (or fails, SIGQUITting us)."""
        try:
            self.proc.stdin.write(name + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        import select

        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return bool(readable) and self.proc.stdout.readline().strip() == "ok"

    def shutdown(self, wait: float = SCHEDULER_EXIT_WAIT_S) -> None:
        """ShutdownReq: the scheduler frees GPU memory and exits; wait for it (bounded)."""
        self.stopping = True
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write("shutdown\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            log.warning(f"Scheduler did not exit within {wait:.0f}s after ShutdownReq; killing it")
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stopping = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


def _uvicorn_server(config):
    """uvicorn.Server without its own signal capture: SGLang's handlers own the signals."""
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self):
            return contextlib.nullcontext()

    return Server(config)


class Simulator:
    def __init__(self, a) -> None:
        self.a = a
        self.t0 = time.monotonic()
        self.res = resources(a)
        self.metrics = SimMetrics(a.served_model_name)
        self.engine = Engine(self.res, tokens_per_s=a.sim_tokens_per_s, ttft=a.sim_ttft,
                             decode_log_interval=a.decode_log_interval, on_finish=self._finished,
                             on_first_token=self.metrics.first_token,
                             waiting_timeout=_env_float("SGLANG_REQ_WAITING_TIMEOUT"),
                             running_timeout=_env_float("SGLANG_REQ_RUNNING_TIMEOUT"))
        self.metrics.attach(self.engine)
        self.state = SimState(a, self.res, self.engine, self.metrics)
        if a.sim_gpu:
            from qwentui.sim.gpu import SimGpu, SimGpuCollector, card_for

            gpu = SimGpu(card_for(a.sim_gpu), self.engine, mem_fraction=a.mem_fraction_static)
            self.metrics.registry.register(SimGpuCollector(gpu))
        self.scheduler: Scheduler | None = None
        self.server = None
        self.uvicorn_up = False
        self.exit_code = 0
        self.raise_sigterm = False
        self.gracefully_exit = False
        self._watchdog_task: asyncio.Task | None = None
        self.metrics_dir = _leave_ipc_files()

    def _finished(self, job: Job, seconds: float, aborted: bool) -> None:
        if job.counted:
            self.metrics.finished(job.streaming, job.prompt_tokens, job.completion_tokens, seconds, aborted)

    # -- signals ---------------------------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGQUIT, self._on_sigquit)
        if self.a.sim_ignore_sigterm:
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm_ignored)

    def _on_sigquit(self) -> None:
        if self.uvicorn_up:
            log.error("SIGQUIT received. signum=3, frame=None. It usually means one child failed.")
        else:
            log.error("Received sigquit from a child process. It usually means the child failed.")
        self.kill_tree()

    def kill_tree(self) -> None:
        """kill_process_tree(os.getpid()): SIGKILL the children, then ourselves."""
        if self.scheduler:
            self.scheduler.kill()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _on_sigterm_ignored(self) -> None:
        log.warning("qwentui simulator: SIGTERM ignored (--sim-ignore-sigterm)")

    def _on_sigterm(self) -> None:
        if self.gracefully_exit:
            return
        if not self.engine.served:  # no generate request yet: uvicorn's handler, then die by SIGTERM
            self.raise_sigterm = True
            self.server.should_exit = True
            return
        log.warning("SIGTERM received. signum=None frame=None. Draining requests and shutting down...")
        self.gracefully_exit = True  # acted on at the watchdog's next 5 s tick
        self.state.draining = True  # /health answers 503 at once

    async def _sigterm_watchdog(self) -> None:
        """SGLang's loop, started with the first generate request: `while not
        gracefully_exit: await asyncio.sleep(5)`, then drain, ShutdownReq, exit."""
        while not self.engine.served:
            await asyncio.sleep(0.05)
        while not self.gracefully_exit:
            await asyncio.sleep(DRAIN_POLL_S)
        await self._drain()

    def _on_sigint(self) -> None:
        self.exit_code = 130
        if self.server is not None:
            self.server.should_exit = True

    async def _drain(self) -> None:
        """Drain every 5 s until no request is left (no time limit), unless UnHealthy or
        SGL_FORCE_SHUTDOWN; then ShutdownReq and wait for the scheduler.

        A SIGTERM sent to the whole process group also kills the scheduler child (default
        action); SGLang's SubprocessWatchdog then wins and the server dies by SIGKILL.
        """
        while True:
            if self.scheduler.check():
                return
            if self.state.unhealthy:
                log.error("Signal SIGTERM received while health check failed. Force exiting.")
                break
            if os.environ.get("SGL_FORCE_SHUTDOWN", "").lower() in ("1", "true", "yes"):
                log.error("Signal SIGTERM received while force shutdown flag set. Force exiting.")
                break
            log.info(f"Gracefully exiting... Remaining number of requests {self.engine.busy}. "
                     f"Remaining requests remaining_rids={self.engine.rids()}.")
            if not self.engine.busy:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.shutdown)
        self.engine.abort(abort_all=True)  # no scheduler left: open streams end now
        self.server.should_exit = True

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._announce()
        crash = self.a.sim_crash_after
        self.scheduler = Scheduler.spawn(self.a, None if crash is None else max(crash - self._elapsed(), 0.0))
        self._install_signals(loop)
        try:
            await phases.load(self.a, self.res, self.scheduler)
            code = await self._serve(loop)
        finally:
            self.scheduler.stop()
            if self.metrics_dir:  # a TemporaryDirectory: gone on a clean exit, left after SIGKILL
                import shutil

                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if self.raise_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        return code

    def _elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _announce(self) -> None:
        log.warning(SIM_BANNER)  # shown even with --log-level warning
        log.info(f"server_args={simargs.server_args_dict(self.a)}")
        for flag in self.a.ignored:
            log.warning(f"qwentui simulator: {flag} has no effect in the simulator (ignored)")
        if self.a.disable_cuda_graph:
            log.warning("The argument '--disable-cuda-graph' is deprecated. Please use "
                        "'--cuda-graph-backend-decode disabled --cuda-graph-backend-prefill disabled' instead.")

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> int:
        import uvicorn

        app = build_app(self.state, lifespan=self._lifespan)
        http_level = logs.level_of(self.a.log_level_http or self.a.log_level)
        config = uvicorn.Config(app, host=self.a.host, port=self.a.port, log_config=logs.uvicorn_config(
            self.a.uvicorn_access_log_exclude_prefixes), log_level=http_level, timeout_keep_alive=5,
            lifespan="on", access_log=True)
        self.server = _uvicorn_server(config)
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        if not self.a.sim_ignore_sigterm:
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        try:
            await self.server.serve()
        except SystemExit as exc:  # bind failure: uvicorn already logged [Errno 98] ...
            return int(exc.code or 1)
        return self.exit_code

    @asynccontextmanager
    async def _lifespan(self, app):
        if self.a.sampling_defaults == "model":
            log.info("Using default chat sampling params from model generation config: "
                     "{'temperature': 0.6, 'top_k': 20, 'top_p': 0.95}")
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._warmup()), loop.create_task(self._sigterm_watchdog())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()

    async def _warmup(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.01)
        self.uvicorn_up = True
        if self.a.skip_server_warmup:
            self.state.up = True
        else:
            await self._warmup_generate()
        log.info("The server is fired up and ready to roll!")
        if self.a.sim_unhealthy_after is not None:
            await asyncio.sleep(self.a.sim_unhealthy_after)
            self._turn_unhealthy()

    def _turn_unhealthy(self) -> None:
        """What SGLang's /health_generate does when no scheduler output came for 20 s."""
        tic = time.time() - 20
        log.error("Health check failed. Server couldn't get a response from detokenizer for last 20 seconds. "
                  f"tic start time: {tic:.2f}. last_heartbeat time: {tic - 1:.2f}")
        self.state.unhealthy = True

    async def _warmup_generate(self) -> None:
        """POST /generate "The capital city of France is" (8 tokens), then status Up."""
        left = self.a.sim_cold_start * phases.WARMUP_SHARE
        prompt = "The capital city of France is"
        plan = textgen.plan_for_prompt(self.a.sim_seed, prompt)
        job = Job(tokens=plan.tokens(), prompt_tokens=textgen.count_text_tokens(prompt) + 1,
                  max_new_tokens=8, streaming=False)
        t = time.monotonic()
        async for _ in self.engine.run(job):
            pass
        await asyncio.sleep(max(left - (time.monotonic() - t), 0))
        self.state.up = True


def _leave_ipc_files() -> str:
    """SGLang's per-launch files: 5 ZMQ ipc sockets in the temp dir (NamedTemporaryFile,
    delete=False), a /dev/shm load snapshot named after one of them (never unlinked) and a
    Prometheus multiprocess temp dir. Returns the metrics dir."""
    import socket
    import tempfile

    from qwentui.engine.rundir import SHM_DIR, shm_path_for

    names = []
    for _ in range(ZMQ_SOCKETS):
        with tempfile.NamedTemporaryFile(delete=False) as fh:
            names.append(fh.name)
        os.unlink(names[-1])
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.bind(names[-1])  # leaves a socket file behind, as a killed ZMQ bind does
    with contextlib.suppress(OSError):
        shm_path_for(f"ipc://{names[1]}", SHM_DIR).write_bytes(b"\0" * 64)
    return tempfile.mkdtemp()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = simargs.parse(argv)
    a.launch_command = shlex.join(["python", "-m", "qwentui.sim", *argv])
    logs.configure(a.log_level)
    disable_created_series()
    sim = Simulator(a)
    try:
        return asyncio.run(sim.run())
    except KeyboardInterrupt:
        return 130
