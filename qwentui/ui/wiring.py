"""The app's side of `qwentui.runtime.core.Runtime`: panes, header fields, idle dialogs, restart.

A mixin for `QwentuiApp` so the runtime wiring stays out of the layout and key code.
Each runtime snapshot updates only what changed: the GPU pane when a new telemetry
sample arrived, header fields when their text changed, the cost pane (it repaints
itself only on a new value).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence

from rich.text import Text
from textual.css.query import NoMatches

from qwentui.chat.conversation import Turn
from qwentui.config import format_duration
from qwentui.cost.answers import AnswerCost, cost_text, requests_now
from qwentui.errors import QwentuiError
from qwentui.idle.watchdog import IdleState
from qwentui.runtime.core import RuntimeSnapshot, state_of
from qwentui.ui.widgets.cost import CostPane, header_text
from qwentui.ui.widgets.header import blocked_reason
from qwentui.ui.widgets.gpu import GpuPane
from qwentui.ui.dialogs.idle import IdleWarning, PoweroffCountdown

RESTART_KEY = "f5"
AUTO_STOPS = ("idle", "budget")  # stop reasons after which one key restarts


class RuntimeWiring:
    """Mixed into QwentuiApp; expects `self.runtime` (or None), `self.chat`, `self.header`."""

    runtime: Any
    _fields: dict[str, Any]
    _telemetry_seq: int
    _warning: IdleWarning | None
    _cached_client: Any

    def init_wiring(self) -> None:
        self._fields = {}
        self._telemetry_seq = -1
        self._warning = None
        self._cached_client = None
        self._history_loaded = False
        self._answer_cost: AnswerCost | None = None

    def start_runtime(self) -> None:
        """Mount the GPU and cost panes and run the runtime loop (no-op without a runtime),
        after the first frame: it is ~0.1 s of work nobody sees before the chat pane."""
        if self.runtime is not None:
            self.call_after_refresh(self._start_runtime_now)

    def _start_runtime_now(self) -> None:
        rt = self.runtime
        fleet = getattr(self, "fleet_pane", None)  # `qwentui fleet --console`: the fleet view in its place
        self.mount_side(fleet or GpuPane(id="gpu"), CostPane(id="cost"))
        rt.on_snapshot = self._on_runtime_snapshot
        rt.on_message = lambda text: self.notify(text, title="Idle watchdog", timeout=8)
        rt.on_action_done = self._on_action_done
        rt.confirm = self._confirm_poweroff
        if rt.ledger_error and not rt.attached:
            self.notify(rt.ledger_error, title="Cost ledger", severity="warning", timeout=10)
        self.run_worker(self._run_runtime(), group="runtime", exit_on_error=False, description="runtime")

    async def _run_runtime(self) -> None:
        rt = self.runtime
        if self.cfg.cache.enabled and rt.cache is None:
            from qwentui.cache import open_cache

            rt.cache = await open_cache(self.cfg.cache)
            warning = rt.cache.stats().warning
            if warning:
                self.notify(warning, title="Cache", severity="warning", timeout=8)
        await rt.run()

    # ------------------------------------------------------------------ snapshots

    def _on_runtime_snapshot(self, snap: RuntimeSnapshot) -> None:
        if not self.is_running:
            return
        try:
            self._show_snapshot(snap)
        except NoMatches:  # a last snapshot can land while the app tears its screen down
            pass

    def _show_snapshot(self, snap: RuntimeSnapshot) -> None:
        tele = snap.telemetry
        if tele is not None and tele.seq != self._telemetry_seq:
            self._telemetry_seq = tele.seq
            if self._answer_cost is not None:  # requests sharing the engine with this answer
                self._answer_cost.sample(time.time(), requests_now(getattr(tele, "engine", None)))
            gpu = self.query_one("#gpu", GpuPane)
            if not self._history_loaded and self.runtime.sampler is not None:
                self._history_loaded = True
                gpu.set_history(list(self.runtime.sampler.history))
            else:
                gpu.snapshot = tele
        cost = self.query_one("#cost", CostPane)
        if cost.snapshot != snap.cost:
            cost.snapshot = snap.cost
        self._set_field("runtime", self._runtime_field(snap))  # idle first: it is what acts
        self._follow_warning(snap)
        self._follow_auto_stop(snap)

    def _set_field(self, key: str, value: Any) -> None:
        if self._fields.get(key) != value:
            self._fields[key] = value
            self.header.set_field(key, value)

    @staticmethod
    def _runtime_field(snap: RuntimeSnapshot) -> Text:
        """'idle 12:30 — stop in 17:30  ¥2.5/h · session ¥0.42'; the countdown in warning colours."""
        field = Text()
        idle = snap.idle_text
        if idle:
            if snap.idle.state in (IdleState.WARNING, IdleState.ACTING):
                style = "bold black on yellow"
            else:
                style = "yellow" if snap.idle.state is IdleState.SNOOZED else ""
            field.append(idle, style=style)
        cost = header_text(snap.cost)
        if cost:
            field.append(("  " if idle else "") + cost)
        return field

    def _follow_warning(self, snap: RuntimeSnapshot) -> None:
        warning = self._warning
        if snap.idle.warning_started:
            self.bell()
            if warning is None:
                timeout = format_duration(self.runtime.watchdog.timeout)
                self._warning = IdleWarning(snap.idle, timeout_text=timeout)
                self.push_screen(self._warning, self._warning_choice)
        elif warning is not None:
            if snap.warning:
                warning.status = snap.idle
            else:  # activity again, snoozed or acting: the question is gone
                self._warning = None
                if warning.is_attached and self.screen is warning:
                    warning.dismiss(None)

    def _warning_choice(self, choice: str | None) -> None:
        self._warning = None
        rt = self.runtime
        if choice == "snooze":
            rt.snooze()
            self.notify(f"Idle stop snoozed for {format_duration(rt.watchdog.timeout)}.", timeout=4)
        elif choice == "stop":
            rt.stop_now(self.runtime.latest.idle.reason_action if rt.latest else "idle")
        elif choice == "disable":
            rt.disable()
            self.notify("Idle stop disabled for this session.", timeout=4)

    def _follow_auto_stop(self, snap: RuntimeSnapshot) -> None:
        if state_of(snap.engine) == "stopped":
            text = self.blocked_text(snap.engine)
            if self.chat.blocked != text:
                self.chat.blocked = text

    def blocked_text(self, status: Any) -> str:
        """Why the chat input is off; after an idle/budget stop: the one key that restarts."""
        reason = getattr(status, "stop_reason", None)
        if self.runtime is not None and state_of(status) == "stopped" and reason in AUTO_STOPS:
            return f"engine stopped ({reason}) — press {RESTART_KEY.upper()} to restart (the chat stays)"
        return blocked_reason(status)

    def _on_action_done(self, result: Any) -> None:
        severity = "information" if result.ok else "error"
        message = result.message + (f"\n{result.hint}" if result.hint else "")
        self.notify(message, title="Idle watchdog", severity=severity, timeout=15)

    async def _confirm_poweroff(self, command: Sequence[str]) -> bool:
        """ActionRunner's last question: a visible countdown that any key cancels."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def answer(ok: bool | None) -> None:
            if not done.done():
                done.set_result(bool(ok))

        self.bell()
        self.push_screen(PoweroffCountdown(command), answer)
        return await done

    # ------------------------------------------------------------------ chat

    def runtime_client(self, client: Any) -> Any:
        """`client`, or a cache-answering wrapper around it when the prompt cache is on."""
        cache = getattr(self.runtime, "cache", None)
        if cache is None or not cache.enabled:
            return client
        if self._cached_client is None or self._cached_client.inner is not client:
            from qwentui.chat.cached import CachingClient

            self._cached_client = CachingClient(client, cache, on_hit=self.runtime.cache_hit)
        return self._cached_client

    def runtime_request_started(self) -> None:
        if self.runtime is not None:
            self.runtime.console_started()
            latest = self.runtime.latest
            self._answer_cost = AnswerCost(time.time(), latest.cost.rate_per_hour if latest else None)

    def runtime_request_ended(self, turn: Turn) -> None:
        if self.runtime is None:
            return
        usage = turn.usage
        self.runtime.console_finished(usage.prompt_tokens if usage else 0,
                                      usage.completion_tokens if usage else 0, counted=turn.reached_engine)
        answer, self._answer_cost = self._answer_cost, None
        if turn.reached_engine and answer is not None:
            self._edit_stats(lambda text: f"{text} · {cost_text(answer.cost(time.time()), self.cfg.cost.currency)}"
                             if answer.price is not None else text)

    def _edit_stats(self, edit: Any) -> None:
        """Rewrite the last answer's stats line."""
        from textual.widgets import Static

        from qwentui.ui.widgets.messages import AssistantMessage

        answers = list(self.chat.query(AssistantMessage))
        if answers:
            stats = answers[-1].query_one("#stats", Static)
            stats.update(edit(str(stats.content)))

    # ------------------------------------------------------------------ actions

    async def action_restart_engine(self) -> None:
        """One key after an idle/budget stop (or any time): restart; the chat stays."""
        rt = self.runtime
        if rt is None or state_of(self.supervisor.status) in ("starting", "stopping"):
            return
        self.notify("Starting the engine…", timeout=3)
        self.run_worker(self._restart(), group="engine", exclusive=True, exit_on_error=False,
                        description="restart engine")

    async def _restart(self) -> None:
        try:
            await self.runtime.restart_engine()
        except QwentuiError as exc:
            if state_of(self.supervisor.status) != "crashed":  # a crash: the boot panel tells it all
                self.notify(exc.hint or exc.message, title=f"Engine: {exc.message}"[:80], severity="error",
                            timeout=10)

    def action_snooze_idle(self) -> None:
        if self.runtime is not None and self.runtime.snooze():
            self.notify(f"Idle stop snoozed for {format_duration(self.runtime.watchdog.timeout)}.", timeout=4)
        else:
            self.notify("Nothing to snooze: the idle stop is off or already acting.", timeout=3)

    def action_disable_idle(self) -> None:
        if self.runtime is not None:
            self.runtime.disable()
            self.notify("Idle stop disabled for this session.", timeout=4)
