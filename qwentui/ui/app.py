"""The Textual app: composition, key routing and engine wiring only.

`make_app` is the one factory used by the CLI, the tests and the snapshot apps.
Panes live in `ui/widgets/`; other panes (GPU, cost, ...) are mounted into the
right-hand `#side` column with `mount_side`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget

from qwentui.chat.client import ChatClient
from qwentui.config import Config
from qwentui.errors import QwentuiError
from qwentui.idle.watchdog import clock_text
from qwentui.ui.widgets.layout import (HORIZONTAL_BREAKPOINTS, VERTICAL_BREAKPOINTS, KeyFooter, PaneTabs,
                                       TooSmall)
from qwentui.ui.screens.operator import OPERATOR_BINDINGS, OperatorActions, SideColumn
from qwentui.ui.themes import install_themes
from qwentui.ui.widgets.chat import ChatPane
from qwentui.ui.dialogs.quit import QuitDialog
from qwentui.ui.dialogs.save import SaveDialog
from qwentui.ui.widgets.header import EngineHeader, state_name
from qwentui.ui.wiring import RuntimeWiring


class QwentuiApp(OperatorActions, RuntimeWiring, App):
    CSS_PATH = "app.tcss"
    TITLE = "qwentui"
    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS  # -tiny (<80: "enlarge" notice), -narrow, -wide, -xwide
    VERTICAL_BREAKPOINTS = VERTICAL_BREAKPOINTS  # -short (<24 rows: "enlarge" notice), -tall
    BINDINGS = [
        Binding("escape", "stop_generation", "Stop", id="stop-generation", priority=True),
        Binding("ctrl+c", "stop_generation", "Stop", id="stop-generation-ctrl-c", show=False, priority=True),
        Binding("ctrl+t", "toggle_thinking", "Thinking", id="toggle-thinking"),
        Binding("ctrl+r", "toggle_reasoning", "Reasoning", id="toggle-reasoning"),
        Binding("ctrl+n", "new_chat", "New chat", id="new-chat"),
        Binding("ctrl+o", "copy_answer", "Copy", id="copy-answer"),
        Binding("ctrl+s", "save_answer", "Save", id="save-answer"),
        *OPERATOR_BINDINGS,  # F1 help, F2-F4 panes, F6 log, F7 client, F8 report, F9 theme, ctrl+g engine
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f5", "restart_engine", "Restart engine", id="restart-engine", show=False,
                tooltip="Restart the engine (the guard's); after the guard died: start a new guard"),
        Binding("f10", "snooze_idle", "Snooze idle", id="snooze-idle", key_display="F10", show=False, priority=True,
                tooltip="Snooze the guard's idle stop (push it back by the idle timeout)"),
    ]

    engine_status: reactive[Any] = reactive(None, always_update=True, init=False)

    @dataclass
    class EngineStatusChanged(Message):
        status: Any

    def __init__(self, cfg: Config, *, supervisor: Any = None, client: ChatClient | None = None,
                 clock: Callable[[], float] | None = None, status: Any = None, runtime: Any = None,
                 reconnect: Callable[[], Awaitable[Any]] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.supervisor = supervisor  # an EngineControl: the guard's engine, or an attached server
        # The guard's GuardLink (or, attached to a foreign server, a local Runtime with the watchdog off)
        self.runtime = runtime
        self.reconnect = reconnect  # a new GuardLink (starting a guard) after the guard died
        self.exit_reason = "user"  # why the app ends ("signal", ...)
        self.exit_deadline: float | None = None  # the CLI sets it: teardown may not outlast it
        self.farewell = ""  # one line printed after the app ended
        self.init_wiring()
        self._client = client
        self._owns_client = client is None
        self.clock = clock or time.monotonic
        self._initial_status = status
        self._unsubscribe: Callable[[], Any] | None = None

    def compose(self) -> ComposeResult:
        chat = self.cfg.chat
        yield EngineHeader(id="header")
        yield PaneTabs(id="pane-tabs")
        with Horizontal(id="body"):
            yield ChatPane(client_factory=self.chat_client, thinking=chat.thinking, id="chat",
                           system_prompt=chat.system_prompt, max_tokens=chat.max_tokens, clock=self.clock)
            yield SideColumn(id="side")
        yield KeyFooter()
        yield TooSmall()

    def on_mount(self) -> None:
        if self.cfg.ui.keymap:
            self.set_keymap(self.cfg.ui.keymap)
        for warning in install_themes(self, self.cfg.ui.theme):
            self.notify(warning, title="Theme", severity="warning", timeout=8)
        self.engine_status = self.supervisor.status if self.supervisor else self._initial_status
        if self.supervisor is not None:
            self.follow_engine(self.supervisor)
            attached = getattr(self.engine_status, "attached", False)
            if (self.cfg.engine.autostart or attached) and state_name(self.engine_status) == "stopped":
                self.call_after_refresh(self.start_engine)  # first paint before the engine starts
        self.start_runtime()
        self.chat.prompt.focus()
        self.call_after_refresh(gc.freeze)  # start-up objects out of the GC: no long pauses while streaming

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._client is not None and self._owns_client:
            await self._client.aclose()

    @property
    def chat(self) -> ChatPane:
        return self.query_one("#chat", ChatPane)

    @property
    def header(self) -> EngineHeader:
        return self.query_one("#header", EngineHeader)

    def mount_side(self, *panes: Widget) -> None:
        """Mount panes into the right-hand column (shown once it has a pane)."""
        self.add_side_panes(panes)  # F3/F4 switch to them on narrow terminals

    # ------------------------------------------------------------------ engine

    def follow_engine(self, supervisor: Any) -> None:
        """Drive the header and chat from `supervisor` (a new guard's engine replaces the old)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.supervisor = supervisor
        if hasattr(supervisor, "subscribe"):  # one way in: a message per change, read when handled
            self._unsubscribe = supervisor.subscribe(self._engine_changed)
        self._sync_status()

    def _engine_changed(self, status: Any) -> None:
        """The engine's listener (supervisor or guard link); safe from any thread."""
        self.post_message(self.EngineStatusChanged(status))

    def on_qwentui_app_engine_status_changed(self, event: EngineStatusChanged) -> None:
        self._sync_status()  # the newest status: older messages still queued change nothing

    def _sync_status(self) -> None:
        status = self.supervisor.status if self.supervisor is not None else None
        if status is not None and status is not self.engine_status:
            self.engine_status = status

    def watch_engine_status(self, status: Any) -> None:
        try:
            header, chat = self.header, self.chat
        except NoMatches:  # the engine's last status (stopping) can land while the app tears down
            return
        header.status = status
        chat.boot.status = status
        chat.blocked = self.blocked_text(status)
        self.refresh_bindings()

    def chat_client(self) -> ChatClient:
        if self._client is None:
            sup, eng = self.supervisor, self.cfg.engine
            if sup is not None:
                base, key, model = sup.base_url, sup.api_key, sup.served_model
            else:
                base, key = f"http://{eng.host}:{eng.port}", eng.api_key
                model = eng.served_model_name or eng.model
            self._client = ChatClient(base, api_key=key, model=model or "default")
        return self.runtime_client(self._client)

    def _owns_engine(self) -> bool:
        sup = self.supervisor
        return sup is not None and not getattr(sup.status, "attached", False)

    def start_engine(self) -> None:
        """Launch the engine (attached: connect to it); failures become a notification."""
        if self.supervisor is not None and not getattr(self.supervisor.status, "running", False):
            self.run_worker(self._start_engine(), group="engine", exclusive=True, exit_on_error=False,
                            description="start engine")

    async def _start_engine(self) -> None:
        try:
            await (self.runtime.start_engine() if self.runtime is not None else self.supervisor.start())
            self._sync_status()  # an engine without listeners (tests' fakes) is read after each action
        except QwentuiError as exc:
            if state_name(self.supervisor.status) != "crashed":  # a crash: the boot panel tells it all
                self.notify(exc.hint or exc.message, title=f"Engine: {exc.message}"[:80], severity="error",
                            timeout=10)

    def stop_engine(self, then_exit: bool = False) -> None:
        if self._owns_engine():
            self.run_worker(self._stop_engine(then_exit), group="engine", exclusive=True, exit_on_error=False,
                            description="stop engine")
        elif then_exit:
            self.exit()

    async def _stop_engine(self, then_exit: bool) -> None:
        try:
            await self.supervisor.stop("user")
            self._sync_status()
        except QwentuiError as exc:
            self.notify(exc.message, title="Engine stop failed", severity="error", timeout=10)
        if then_exit:
            self.exit()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_generation":
            # Only while streaming, and not over a dialog; otherwise the key falls
            # through (esc closes dialogs, ctrl+c copies in the prompt).
            return self.chat.streaming and isinstance(self.screen, Screen) and not self.screen.is_modal
        return True

    def on_chat_pane_request_started(self) -> None:
        self.runtime_request_started()
        self.refresh_bindings()

    def on_chat_pane_request_ended(self, event: ChatPane.RequestEnded) -> None:
        self.runtime_request_ended(event.turn)
        self.refresh_bindings()

    def action_stop_generation(self) -> None:
        if self.chat.stop():
            self.notify("Stopped generating.", timeout=2)

    def action_toggle_thinking(self) -> None:
        self.chat.toggle_thinking()
        self.notify(f"Thinking {'ON' if self.chat.thinking else 'off'} for the next message.", timeout=2)

    def action_toggle_reasoning(self) -> None:
        if not self.chat.toggle_reasoning():
            self.notify("No reasoning to show yet.", timeout=2)

    async def action_new_chat(self) -> None:
        await self.chat.new_chat()

    def action_copy_answer(self) -> None:
        text = self.chat.conversation.last_answer()
        if text is None:
            self.notify("No answer to copy yet.", timeout=2)
            return
        self.copy_to_clipboard(text)
        self.notify("Copied the last answer (OSC 52). If nothing arrives, ctrl+s saves it to a file.", timeout=4)

    def action_save_answer(self) -> None:
        text = self.chat.conversation.last_answer()
        if text is None:
            self.notify("No answer to save yet.", timeout=2)
            return
        self._save("Save the last answer to", "answer", "md", text)

    def action_export(self, fmt: str) -> None:
        conv = self.chat.conversation
        if not conv.turns:
            self.notify("The conversation is empty.", timeout=2)
            return
        text = conv.to_json() if fmt == "json" else conv.to_markdown()
        self._save(f"Export the conversation ({fmt.upper()}) to", "chat", fmt, text)

    def _save(self, title: str, stem: str, ext: str, text: str) -> None:
        name = f"qwentui-{stem}-{datetime.now():%Y%m%d-%H%M%S}.{ext}"
        default = str(Path.cwd() / name)

        def done(path: Path | None) -> None:
            if path is not None:
                self.notify(f"Saved to {path}", timeout=4)

        self.push_screen(SaveDialog(title, default, text), done)

    def exit(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.exit_deadline is not None:
            from qwentui.ui.shutdown import arm_exit_deadline

            arm_exit_deadline(self.exit_deadline)
        super().exit(*args, **kwargs)

    @property
    def guarded(self) -> bool:
        """True when a guard owns the engine (not attached to a foreign server)."""
        return hasattr(self.runtime, "stop_guard")

    async def action_quit(self) -> None:
        status = self.engine_status
        running = state_name(status) in ("starting", "ready", "stopping")
        if not self.guarded or not running:
            self.exit()
            return
        detail = f"{getattr(status, 'model', '')} at {getattr(status, 'base_url', '')}"
        self.push_screen(QuitDialog(detail, keep_note=self._keep_note()), self._quit_choice)

    def _keep_note(self) -> str:
        snap = getattr(self.runtime, "latest", None)
        left = snap.idle.seconds_left if snap is not None else None
        if snap is None or snap.idle.state.value in ("disabled", "done"):
            return "the guard keeps it running with the idle stop off: 'qwentui stop' ends it"
        when = f"stops in {clock_text(left, up=True)}" if left is not None else "stops once idle"
        return f"the guard keeps it running with the idle stop armed ({when})"

    def _quit_choice(self, choice: str | None) -> None:
        if choice == "stop":
            self.notify("Stopping the engine and the guard…", timeout=10)
            self.run_worker(self._stop_guard_and_exit(), group="engine", exclusive=True, exit_on_error=False,
                            description="stop guard")
        elif choice == "keep":
            self.farewell = (f"{self._keep_note()}; 'qwentui' attaches again, 'qwentui status' shows it, "
                             "'qwentui stop' ends it")
            self.exit()

    async def _stop_guard_and_exit(self) -> None:
        try:
            await self.runtime.stop_guard()
            self.farewell = "the guard is stopping the engine and itself ('qwentui status' shows when it is gone)"
        except QwentuiError as exc:
            self.notify(exc.message, title="Could not stop the guard", severity="error", timeout=10)
            return
        self.exit()

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.operator_commands()
        chat = self.chat
        if chat.streaming:
            yield SystemCommand("Stop generation", "Stop the answer being generated (esc)",
                                self.action_stop_generation)
        mode = "ON" if chat.thinking else "off"
        yield SystemCommand("Toggle thinking", f"Qwen3 thinking for the next message (now {mode}; ctrl+t)",
                            self.action_toggle_thinking)
        yield SystemCommand("Toggle reasoning", "Show/hide the last answer's reasoning (ctrl+r)",
                            self.action_toggle_reasoning)
        yield SystemCommand("New chat", "Start an empty conversation (ctrl+n)", self.action_new_chat)
        yield SystemCommand("Copy last answer", "Copy to the clipboard via OSC 52 (ctrl+o)", self.action_copy_answer)
        yield SystemCommand("Save last answer to file", "Write it to a Markdown file (ctrl+s)",
                            self.action_save_answer)
        yield SystemCommand("Export conversation as Markdown", "Save the whole chat as .md",
                            lambda: self.action_export("md"))
        yield SystemCommand("Export conversation as JSON", "Save the whole chat as .json",
                            lambda: self.action_export("json"))
        if self._owns_engine():
            yield SystemCommand("Start engine", "Launch the engine (ctrl+g)", self.start_engine)
            yield SystemCommand("Stop engine", "Stop the engine (SIGTERM, then SIGKILL; ctrl+g asks first)",
                                self.stop_engine)
        if self.runtime is not None:
            yield SystemCommand("Restart engine", "Stop (if running) and start it again; the chat stays (f5)",
                                self.action_restart_engine)
            yield SystemCommand("Snooze idle stop", "Push the idle stop out by the idle timeout (F10)",
                                self.action_snooze_idle)
            yield SystemCommand("Disable idle stop", "No idle stop for this session (a budget still stops)",
                                self.action_disable_idle)


def make_app(cfg: Config, *, supervisor: Any = None, client: ChatClient | None = None,
             clock: Callable[[], float] | None = None, status: Any = None, runtime: Any = None,
             reconnect: Callable[[], Awaitable[Any]] | None = None) -> QwentuiApp:
    """Build the app. `supervisor` drives the header and engine actions; without one,
    `status` is a fixed engine snapshot (None = an engine qwentui does not manage)."""
    return QwentuiApp(cfg, supervisor=supervisor, client=client, clock=clock, status=status,
                      runtime=runtime, reconnect=reconnect)
