"""The headless serve loop: start the engine, print phases and a client snippet, run until
a stop is requested (signal, hook) or the engine exits, then stop it completely.

Features that act while serving (idle watchdog, cost ledger) plug in through
`session.on_tick` (called every `tick` seconds while the engine is ready) and
`session.on_exit` (called once after the engine stopped), and stop the engine with
`session.request_stop(reason)`; they may set `session.exit_code`.

With `stay=True` (a detached guard) the session outlives its engine: after an idle stop,
a crash or a stop through the control API it keeps running until `request_stop`, so a
console can restart the engine; `hold_open()` keeps a foreground run alive across an
API restart.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import time
from typing import Awaitable, Callable, TextIO

Hook = Callable[["ServeSession"], "Awaitable[None] | None"]


class ServeSession:
    """One headless run: owns the supervisor, the signal handlers and the main loop."""

    def __init__(self, cfg, *, preset: str | None = None, attach: str | None = None, out: TextIO | None = None, tick: float = 1.0,
                 supervisor=None, stay: bool = False) -> None:
        from qwentui.engine import Supervisor

        self.cfg = cfg
        self.out = out or sys.stdout
        self.tick = tick
        self.stay = stay
        self._holds = 0  # API restarts under way: a foreground run does not end meanwhile
        self.on_tick: list[Hook] = []
        self.on_exit: list[Hook] = []
        self.stop_reason: str | None = None
        self.exit_code = 0  # hooks raise it (e.g. a failed idle poweroff)
        self._stop = asyncio.Event()
        self._t0 = time.monotonic()
        self._last_phase = ""
        if supervisor is not None:
            self.sup = supervisor
        elif attach:
            self.sup = Supervisor.attach(attach, cfg.engine.api_key, cfg=cfg)
        else:
            self.sup = Supervisor(cfg, preset=preset)
        self.sup.subscribe(self._on_status)

    def say(self, text: str) -> None:
        try:
            print(text, file=self.out, flush=True)
        except (BrokenPipeError, OSError):  # `qwentui serve | head`: keep going, stop cleanly later
            pass

    def request_stop(self, reason: str) -> None:
        """Ask the main loop to stop the engine (first reason wins)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def hold_open(self, delta: int) -> None:
        """+1 while an engine restart runs outside the main loop, -1 when it is done."""
        self._holds = max(0, self._holds + delta)

    async def run(self, *, start: bool = True) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            started = await self._start() if start else False
            if started:
                self._print_snippet()
            elif not self.stay:
                return 1 if self.sup.status.state.value == "crashed" else 0
            await self._main_loop()
            return 1 if self.sup.status.state.value == "crashed" else 0
        finally:
            try:
                await self._shutdown()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    # ----- phases -----------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "user")
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "signal")
        loop.add_signal_handler(signal.SIGHUP, self.request_stop, "signal")

    def _on_status(self, status) -> None:
        if status.phase and status.phase != self._last_phase and status.state.value == "starting":
            self.say(f"  [{time.monotonic() - self._t0:6.1f}s] {status.phase}")
        elif self.stay and status.state.value in ("stopped", "crashed") and self._last_phase:
            self.say(f"engine {status.state.value} ({status.stop_reason or 'stopped'})"
                     + (f": {status.error}" if status.error else ""))
        self._last_phase = status.phase

    async def _start(self) -> bool:
        """Start (or attach); False when start-up failed or a stop was requested meanwhile."""
        from qwentui.errors import QwentuiError, UsageError

        self.sup.check()  # bad input fails before anything is printed
        st = self.sup.status
        if self.sup.attached:
            self.say(f"qwentui serve: attaching to {st.base_url} (it will be left running)")
        else:
            label = "  [SIMULATED]" if st.simulated else ""
            self.say(f"qwentui serve: starting {st.kind} engine, preset {st.preset}, on {st.base_url}{label}")
        starting = asyncio.create_task(self.sup.start())
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            self.say(f"stop requested ({self.stop_reason}) during start-up")
            await self.sup.stop(self.stop_reason or "user")
        try:
            await starting
        except UsageError:
            raise  # bad input: one line, exit 2 (cli.main)
        except QwentuiError as exc:
            if self._stop.is_set():
                return False
            self._report_failure(exc.message, exc.hint)
            return False
        return not self._stop.is_set()

    def _report_failure(self, message: str, hint: str | None) -> None:
        self.say(f"qwentui: error: {message}")
        if hint:
            self.say(f"hint: {hint}")
        tail = self.sup.log_lines()[-15:]
        if tail:
            self.say("last engine log lines:")
            for line in tail:
                self.say(f"  | {line if len(line) <= 240 else line[:239] + '…'}")
        if self.sup.log_path:
            self.say(f"full log: {self.sup.log_path}")

    async def _main_loop(self) -> None:
        """Tick hooks until a stop is requested or (unless staying) the engine exits on its own."""
        while not self._stop.is_set() and (self.stay or self._holds or self.sup.status.state.value == "ready"):
            for hook in list(self.on_tick):
                result = hook(self)
                if inspect.isawaitable(result):
                    await result
            await self._sleep_or_wake(self.tick)
        st = self.sup.status
        if self.stay:
            return
        if st.state.value == "crashed":
            self._report_failure(f"engine crashed: {st.error}", st.hint)
        elif st.state.value == "stopped" and not self._stop.is_set() and st.stop_reason not in (None, "external"):
            self.say(f"engine stopped through the control API ({st.stop_reason})")  # e.g. batch --then stop
        elif st.state.value == "stopped" and not self._stop.is_set():
            self.say(f"engine exited on its own: {st.error or st.stop_reason}")

    async def _sleep_or_wake(self, seconds: float) -> None:
        waits = [asyncio.create_task(self._stop.wait())]
        if not (self.stay or self._holds):  # otherwise no engine may run: wait_exit returns at once
            waits.append(asyncio.create_task(self.sup.wait_exit()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def _shutdown(self) -> None:
        st = self.sup.status
        if self.sup.attached:
            await self.sup.stop(self.stop_reason or "user")
            self.say(f"left the server at {st.base_url} running (attached)")
        elif st.running:
            t0 = time.monotonic()
            self.say(f"stopping engine ({self.stop_reason or 'error'})...")
            await self.sup.stop(self.stop_reason or "error")
            after = self.sup.status
            self.say(f"engine stopped in {time.monotonic() - t0:.1f}s (exit code {after.exit_code})"
                     + (f"; {after.error}" if after.error else ""))
        for hook in list(self.on_exit):
            result = hook(self)
            if inspect.isawaitable(result):
                await result

    # ----- the snippet ------------------------------------------------------------------------

    def _print_snippet(self) -> None:
        from qwentui.chat.snippets import snippets
        from qwentui.config import mask_secret

        st, sup = self.sup.status, self.sup
        took = (st.ready_at - st.started_at) if st.ready_at and st.started_at else 0.0
        self.say(f"engine ready in {took:.1f}s" + (f" (pid {st.pid})" if st.pid else ""))
        if st.simulated:
            self.say("SIMULATED: this is qwentui's SGLang simulator: no GPU, no model, synthetic answers")
        key = sup.api_key
        self.say(f"  base URL : {st.base_url}/v1")
        self.say(f"  model    : {sup.served_model}")
        self.say(f"  api key  : {mask_secret(key) + _key_source(self.cfg, key) if key else '(none: loopback only)'}")
        examples = snippets(st.base_url, sup.served_model, key, thinking=self.cfg.chat.thinking, key_in_env=True)
        for name in ("curl", "openai"):
            self.say(f"  {name}:")
            for line in examples[name].splitlines():
                self.say(f"    {line}")
        if sup.log_path and not sup.attached:
            self.say(f"  engine log: {sup.log_path}")
        action = "leave the server running" if sup.attached else "stop the engine"
        self.say(f"Ctrl+C to {action}.")


def _key_source(cfg, key: str) -> str:
    if cfg.engine.api_key:
        return "  (from engine.api_key)"
    from qwentui.engine import apikey

    return f"  (export OPENAI_API_KEY=$(cat {apikey.key_path()}))"
