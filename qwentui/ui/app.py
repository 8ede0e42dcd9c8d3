"""The Textual app: keys and actions, the engine and the guard, dialogs.

The layout is `ConsoleView` (ui/screens/console.py), the app's default screen; the
guard's state arrives one way, as a message per engine change or snapshot (stale ones
dropped), and every control goes back through the guard's API. `make_app` is the one
factory used by the CLI, the tests and the snapshot apps. Panes live in `ui/widgets/`;
the GPU and cost panes are mounted into the right-hand `#side` column with `mount_side`.
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
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget

from qwentui.chat.client import ChatClient
from qwentui.chat.conversation import Turn
from qwentui.config import Config, format_duration
from qwentui.cost.answers import AnswerCost, cost_text, requests_now
from qwentui.engine.status import EngineState, EngineStatus
from qwentui.errors import QwentuiError
from qwentui.idle.watchdog import clock_text
from qwentui.runtime.core import RuntimeSnapshot, state_of
from qwentui.ui.widgets.layout import HORIZONTAL_BREAKPOINTS, VERTICAL_BREAKPOINTS
from qwentui.ui.screens.base import OperatorScreen
from qwentui.ui.screens.console import PANE_KEYS, PANE_LABELS, ConsoleView, SideColumn
from qwentui.ui.themes import install_themes
from qwentui.ui.widgets.chat import ChatPane
from qwentui.ui.dialogs.quit import QuitDialog
from qwentui.ui.dialogs.save import SaveDialog
from qwentui.ui.dialogs.idle import IdleWarning
from qwentui.ui.widgets.cost import CostPane
from qwentui.ui.widgets.gpu import GpuPane
from qwentui.ui.widgets.header import EngineHeader, blocked_reason, state_name


# F-keys are priority bindings: the chat prompt (a TextArea) binds f6/f7 to selection.
# `tooltip` is the longer text the help screen shows.
OPERATOR_BINDINGS = [
    Binding("f1", "help", "Help", id="help", key_display="F1", priority=True, tooltip="Help: this list of keys"),
    Binding("question_mark", "help", "Help", id="help-question", show=False, tooltip="Help (when not typing)"),
    Binding("f2", "show_pane('chat')", "Chat", id="pane-chat", key_display="F2", show=False, priority=True,
            tooltip="Chat pane (focus the prompt)"),
    Binding("f3", "show_pane(1)", "GPU", id="pane-1", key_display="F3", show=False, priority=True,
            tooltip="Side pane 1, GPU (narrow terminal: show it; wide: focus it, j/k scroll)"),
    Binding("f4", "show_pane(2)", "Cost", id="pane-2", key_display="F4", show=False, priority=True,
            tooltip="Side pane 2, cost (narrow terminal: show it; wide: focus it, j/k scroll)"),
    # F5 is the runtime's "restart engine"
    Binding("f6", "engine_log", "Log", id="engine-log", key_display="F6", priority=True,
            tooltip="Engine log (/ search, n/N, f follow)"),
    Binding("ctrl+l", "engine_log", "Log", id="engine-log-ctrl-l", show=False, tooltip="Engine log"),
    Binding("f7", "client_snippet", "Client", id="client-snippet", key_display="F7", show=False, priority=True,
            tooltip="Client snippet: URL, model, key; curl, openai, LangChain (copy / save)"),
    Binding("f8", "cost_report", "Report", id="cost-report", key_display="F8", show=False, priority=True,
            tooltip="Cost report for this month"),
    Binding("f9", "change_theme", "Theme", id="change-theme", key_display="F9", show=False, priority=True,
            tooltip="Change theme"),
    Binding("ctrl+g", "engine_toggle", "Engine on/off", id="engine-toggle", show=False,
            tooltip="Start the engine / stop it (asks first)"),
]
RESTART_KEY = "f5"
AUTO_STOPS = ("idle", "budget")  # stop reasons after which one key restarts


@dataclass
class RuntimeUpdate(Message):
    """A snapshot from the guard (or the local runtime); only the newest one is shown."""

    snapshot: RuntimeSnapshot


class QwentuiApp(App):
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
        self.report_loader: Callable[[], Any] | None = None  # tests inject a fixed report
        self.fleet_pane: Widget | None = None  # `qwentui fleet --console` puts its pane first
        self._warning: IdleWarning | None = None
        self._cached_client: Any = None
        self._answer_cost: AnswerCost | None = None  # the answer being generated: its cost estimate
        self._client = client
        self._owns_client = client is None
        self.clock = clock or time.monotonic
        self._initial_status = status
        self._unsubscribe: Callable[[], Any] | None = None

    def compose(self) -> ComposeResult:
        self.console_view = ConsoleView(self.cfg, self.chat_client, self.clock)
        yield self.console_view

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
        if self.runtime is None and self.reconnect is not None:  # a guard is starting: attach when it answers
            self.run_worker(self._new_guard(), group="engine", exclusive=True, exit_on_error=False,
                            description="attach to the guard")
        self.chat.prompt.focus()
        self.call_after_refresh(gc.freeze)  # start-up objects out of the GC: no long pauses while streaming

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._client is not None and self._owns_client:
            await self._client.aclose()

    @property
    def chat(self) -> ChatPane:
        return self.console_view.chat

    @property
    def header(self) -> EngineHeader:
        return self.console_view.header

    @property
    def view(self) -> str:
        """"chat" or the side pane shown (narrow) / focused (wide)."""
        return self.console_view.view

    def mount_side(self, *panes: Widget) -> None:
        """Mount panes into the right-hand column (shown once it has a pane)."""
        self.console_view.add_side_panes(panes)  # F3/F4 switch to them on narrow terminals

    def side_panes(self) -> list[tuple[str, Widget]]:
        """(name, pane) of the right-hand column, in F3/F4 order."""
        return self.console_view.side_panes()

    def action_show_pane(self, which: str | int) -> None:
        if self.screen.is_modal:
            if not isinstance(self.screen, OperatorScreen):
                return
            self.pop_screen()  # F2-F4 from a log/help/... screen go back to the console
        self.console_view.show_pane(which)

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

    # ------------------------------------------------------------------ operator screens

    def open_screen(self, screen: Screen) -> None:
        """Open over the console; an operator screen already open is replaced (no stacking).
        Over a dialog (quit, save, idle warning) nothing opens: the dialog needs its answer."""
        if self.screen.is_modal and not isinstance(self.screen, OperatorScreen):
            self.bell()
            return
        if isinstance(self.screen, OperatorScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def action_help(self) -> None:
        from qwentui.ui.screens.help import HelpScreen, app_rows, rows_for
        from qwentui.ui.screens.log import LogScreen
        from qwentui.ui.screens.report import ReportScreen
        from qwentui.ui.screens.snippet import SnippetScreen
        from qwentui.ui.widgets.chat_input import ChatInput
        from qwentui.ui.dialogs.quit import QuitDialog

        sections = [("Console (work everywhere: F-keys, ctrl+q; others on the console)", app_rows(self)),
                    ("Chat prompt", rows_for(self, ChatInput.BINDINGS))]
        for title, cls in (("Engine log (F6)", LogScreen), ("Client snippet (F7)", SnippetScreen),
                           ("Cost report (F8)", ReportScreen), ("Side column (F3/F4 focus it)", SideColumn),
                           ("Quit dialog (ctrl+q while the engine runs)", QuitDialog)):
            sections.append((title, rows_for(self, cls.BINDINGS)))
        self.open_screen(HelpScreen(sections))

    def engine_log_feed(self):
        from qwentui.ui.screens.log import LogFeed

        sup = self.supervisor
        if sup is None:
            return LogFeed(None, list)
        return LogFeed(sup.log_path, sup.log_lines)

    def action_engine_log(self) -> None:
        from qwentui.ui.screens.log import LogScreen

        self.open_screen(LogScreen(self.engine_log_feed()))

    def client_endpoint(self) -> tuple[str, str, str]:
        """(base URL, model, API key) that other programs use."""
        sup, eng = self.supervisor, self.cfg.engine
        if sup is not None:
            return sup.base_url, sup.served_model or "default", sup.api_key
        return f"http://{eng.host}:{eng.port}", eng.served_model_name or eng.model, eng.api_key

    def action_client_snippet(self) -> None:
        from qwentui.ui.screens.snippet import SnippetScreen

        base, model, key = self.client_endpoint()
        simulated = bool(getattr(self.engine_status, "simulated", False))
        self.open_screen(SnippetScreen(base, model, key, thinking=self.chat.thinking, simulated=simulated))

    def action_cost_report(self) -> None:
        from qwentui.ui.screens.report import ReportScreen, month_report

        loader = self.report_loader or (lambda: month_report(self.cfg))
        self.open_screen(ReportScreen(loader))

    # ----- engine ---------------------------------------------------------------------

    def action_engine_toggle(self) -> None:
        """ctrl+g: start a stopped engine; stopping asks first."""
        sup = self.supervisor
        if sup is None:
            self.notify("This console does not manage an engine.", timeout=3)
            return
        if not getattr(sup.status, "running", False):
            self.notify("Starting the engine…", timeout=3)
            self.start_engine()
            return
        if not self._owns_engine():
            self.notify("Attached to an engine qwentui did not start: it is never stopped from here.", timeout=4)
            return
        from qwentui.ui.dialogs.confirm import ConfirmDialog

        def answer(yes: bool | None) -> None:
            if yes:
                self.notify("Stopping the engine…", timeout=4)
                self.stop_engine()

        self.push_screen(ConfirmDialog("Stop the engine? Its GPU memory is freed; chat stops working.",
                                       "Stop engine"), answer)

    # ----- palette --------------------------------------------------------------------

    def operator_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Help: all keys", "Every key binding (F1 or ?)", self.action_help)
        yield SystemCommand("Open engine log", "Scroll, / search, f follow the tail (F6, ctrl+l)",
                            self.action_engine_log)
        yield SystemCommand("Copy client snippet", "Base URL, model, key; curl/openai/LangChain (F7)",
                            self.action_client_snippet)
        yield SystemCommand("Open cost report", "This month's sessions and totals (F8)", self.action_cost_report)
        yield SystemCommand("Change theme", f"Now {self.theme} (F9)", self.action_change_theme)
        yield SystemCommand("Focus chat", "The chat and its prompt (F2)", lambda: self.action_show_pane("chat"))
        for index, (key, (name, _)) in enumerate(zip(PANE_KEYS, self.console_view.side_panes()), start=1):
            label = PANE_LABELS.get(name, name.title())
            yield SystemCommand(f"Focus {label} pane", f"Show/scroll the {label} pane ({key.upper()})",
                                lambda i=index: self.action_show_pane(i))

    # ------------------------------------------------------------------ the guard (or runtime)

    def start_runtime(self) -> None:
        """Mount the GPU and cost panes and follow the guard (or runtime), after the first
        frame: it is ~0.1 s of work nobody sees before the chat pane. No-op without one."""
        if self.runtime is not None:
            self.call_after_refresh(self._start_runtime_now)

    def _start_runtime_now(self) -> None:
        self._mount_panes()
        self._follow_runtime()

    def _mount_panes(self) -> None:
        self.mount_side(self.fleet_pane or GpuPane(id="gpu"), CostPane(id="cost"))

    def _follow_runtime(self) -> None:
        rt = self.runtime
        rt.on_snapshot = self._on_runtime_snapshot
        rt.on_message = lambda text: self.notify(text, title="Guard", timeout=8)
        rt.on_action_done = self._on_action_done
        if hasattr(rt, "on_gone"):
            rt.on_gone = self._guard_gone
        if rt.ledger_error and not rt.attached:
            self.notify(rt.ledger_error, title="Cost ledger", severity="warning", timeout=10)
        self.run_worker(self._run_runtime(), group="runtime", exit_on_error=False, description="runtime")

    # ------------------------------------------------------------------ the guard

    def _guard_gone(self, why: str) -> None:
        """The guard went away under us: say so, keep the chat, offer a new guard."""
        if not self.is_running or self._exiting_guard():
            return
        from qwentui.ui.dialogs.confirm import ConfirmDialog

        self.notify(f"The guard is gone ({why}). The chat stays.", title="Guard", severity="error", timeout=15)

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._new_guard(), group="engine", exclusive=True, exit_on_error=False,
                                description="start a guard")

        self.push_screen(ConfirmDialog("The guard is gone. Start a new one? The chat stays.", "Start guard"),
                         answer)

    def _exiting_guard(self) -> bool:
        return bool(getattr(self, "_return_code", None) is not None or self.farewell)

    async def _new_guard(self) -> None:
        if self.reconnect is None:
            return
        first = self.runtime is None
        if not first:
            self.notify("Starting a new guard…", timeout=4)
        try:
            link = await self.reconnect()
        except QwentuiError as exc:
            self.notify(exc.hint or exc.message, title=f"Guard: {exc.message}"[:80], severity="error", timeout=15)
            if first:
                e = self.cfg.engine
                self.engine_status = EngineStatus(EngineState.STOPPED, "", e.kind, e.model, "", error=exc.message,
                                                  stop_reason="guard gone", simulated=e.kind == "sim")
            return
        if first:
            self._mount_panes()
        else:
            link.cache = self.runtime.cache
        self.runtime = link
        self.follow_engine(link.engine)
        self._client, self._cached_client = None, None  # the engine may have moved
        self._follow_runtime()

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
        """The runtime's (or guard link's) listener: one message per snapshot."""
        self.post_message(RuntimeUpdate(snap))

    def on_runtime_update(self, message: RuntimeUpdate) -> None:
        snap = message.snapshot
        if self.runtime is None or snap is not self.runtime.latest or not self.is_running:
            return  # stale: a newer snapshot is already queued
        tele = snap.telemetry
        if self._answer_cost is not None and tele is not None:  # requests sharing the engine with this answer
            self._answer_cost.sample(tele.at, requests_now(getattr(tele, "engine", None)))
        try:
            self.console_view.show_snapshot(snap, lambda: list(self.runtime.sampler.history))
            self._follow_warning(snap)
            self._follow_auto_stop(snap)
        except NoMatches:  # a last snapshot can land while the app tears its screen down
            pass

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
        if reason == "guard gone":
            return f"the guard is gone — press {RESTART_KEY.upper()} to start a new one (the chat stays)"
        if self.runtime is not None and state_of(status) == "stopped" and reason in AUTO_STOPS:
            return f"engine stopped ({reason}) — press {RESTART_KEY.upper()} to restart (the chat stays)"
        return blocked_reason(status)

    def _on_action_done(self, result: Any) -> None:
        severity = "information" if result.ok else "error"
        message = result.message + (f"\n{result.hint}" if result.hint else "")
        self.notify(message, title="Idle watchdog", severity=severity, timeout=15)

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
        if getattr(self.engine_status, "stop_reason", None) == "guard gone":
            self.run_worker(self._new_guard(), group="engine", exclusive=True, exit_on_error=False,
                            description="start a guard")
            return
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


def make_app(cfg: Config, *, supervisor: Any = None, client: ChatClient | None = None,
             clock: Callable[[], float] | None = None, status: Any = None, runtime: Any = None,
             reconnect: Callable[[], Awaitable[Any]] | None = None) -> QwentuiApp:
    """Build the app. `supervisor` drives the header and engine actions; without one,
    `status` is a fixed engine snapshot (None = an engine qwentui does not manage)."""
    return QwentuiApp(cfg, supervisor=supervisor, client=client, clock=clock, status=status,
                      runtime=runtime, reconnect=reconnect)
