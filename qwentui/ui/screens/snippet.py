"""F7: how to reach the engine from other programs — curl, openai SDK, LangChain, env vars.

The screen shows the API key masked; only what is copied (OSC 52) or saved carries it.
The examples are built in `qwentui.chat.snippets` (serve prints the same ones).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static, TabbedContent, TabPane

from qwentui.chat.snippets import snippets
from qwentui.config import mask_secret
from qwentui.ui.screens.base import OperatorScreen
from qwentui.ui.dialogs.save import SaveDialog

TABS = (("curl", "curl", "bash"), ("openai", "openai SDK", "python"),
        ("langchain", "LangChain", "python"), ("env", "env vars", "bash"))


class SnippetScreen(OperatorScreen):
    DEFAULT_CSS = """
    SnippetScreen #snippet-info { height: auto; padding: 0 1; }
    SnippetScreen TabbedContent { height: 1fr; }
    SnippetScreen TabPane { padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="screen-back"),
        Binding("c", "copy", "Copy", id="snippet-copy"),
        Binding("s", "save", "Save", id="snippet-save"),
        Binding("right,l", "tab(1)", "Next", id="snippet-next"),
        Binding("left,h", "tab(-1)", "Prev", id="snippet-prev", show=False),
    ]
    TITLE_TEXT = "Client snippet — use the engine from other programs"

    def __init__(self, base_url: str, model: str, api_key: str, *, thinking: bool = True,
                 simulated: bool = False) -> None:
        super().__init__()
        self.base_url, self.model, self.api_key = base_url, model, api_key
        self.thinking, self.simulated = thinking, simulated
        self.full = snippets(base_url, model, api_key, thinking=thinking)
        self.shown = snippets(base_url, model, mask_secret(api_key), thinking=thinking)

    def compose_body(self) -> ComposeResult:
        key = mask_secret(self.api_key) or "(none: the engine accepts any client)"
        sim = "  [SIMULATED engine]" if self.simulated else ""
        info = (f"base URL  {self.base_url}/v1{sim}\nmodel     {self.model}\nAPI key   {key}"
                f"  (copied/saved in full)")
        yield Static(info, id="snippet-info", markup=False)
        with TabbedContent(id="snippet-tabs"):
            for name, label, lexer in TABS:
                with TabPane(label, id=f"tab-{name}"):
                    yield Static(Syntax(self.shown[name], lexer, theme="ansi_dark", background_color="default",
                                        word_wrap=True), id=f"code-{name}")

    @property
    def current(self) -> str:
        return self.query_one(TabbedContent).active.removeprefix("tab-")

    def action_tab(self, step: int) -> None:
        names = [name for name, _, _ in TABS]
        tabs = self.query_one(TabbedContent)
        tabs.active = f"tab-{names[(names.index(self.current) + step) % len(names)]}"

    def action_copy(self) -> None:
        name = self.current
        self.app.copy_to_clipboard(self.full[name])
        self.notify(f"Copied the {name} example with the full key (OSC 52). Nothing arrived? s saves it.",
                    timeout=4)

    def action_save(self) -> None:
        text = "\n".join(f"# --- {label} ---\n{self.full[name]}" for name, label, _ in TABS)
        default = str(Path.cwd() / f"qwentui-client-{datetime.now():%Y%m%d-%H%M%S}.txt")

        def done(path: Path | None) -> None:
            if path is not None:
                self.notify(f"Saved to {path} (mode 0600: it holds the API key)", timeout=4)

        self.app.push_screen(SaveDialog("Save the client examples (with the full API key) to", default, text),
                             done)
