"""Layout parts shared by every screen: the "enlarge the terminal" notice, the pane tabs
shown on narrow terminals and a footer that never cuts a key in half."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MIN_WIDTH, MIN_HEIGHT = 80, 24
HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (MIN_WIDTH, "-narrow"), (110, "-wide"), (160, "-xwide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (MIN_HEIGHT, "-tall")]

# Footer order: what an operator needs most comes first; keys that do not fit are left
# out whole (they are all on the help screen, F1).
FOOTER_ORDER = ("stop-generation", "screen-back", "send", "help", "toggle-thinking", "new-chat",
                "engine-log", "quit", "log-search", "log-follow", "snippet-copy", "snippet-save",
                "snippet-next", "report-save", "newline", "history-previous")


class TooSmall(Widget):
    """Covers the screen (CSS in app.tcss) while the terminal is under 80×24."""

    DEFAULT_CSS = """
    TooSmall { display: none; width: 1fr; height: 1fr; content-align: center middle;
        text-align: center; color: $warning; background: $background; }
    """

    def render(self) -> Text:
        width, height = self.app.size
        return Text(f"qwentui needs a larger terminal.\n\nEnlarge the terminal to at least "
                    f"{MIN_WIDTH}×{MIN_HEIGHT} (now {width}×{height}).\n\nctrl+q quits.")


class PaneTabs(Widget):
    """One line of pane tabs ("F2 Chat  F3 GPU  F4 Cost"), used when the side column is hidden."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $panel; display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tabs: tuple[tuple[str, str, str], ...] = ()
        self._active = "chat"

    def show(self, tabs: tuple[tuple[str, str, str], ...], active: str) -> None:
        """`tabs`: (key display, name, label); repaints only when something changed."""
        if (tabs, active) != (self._tabs, self._active):
            self._tabs, self._active = tabs, active
            self.refresh()

    def render(self) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        for key, name, label in self._tabs:
            style = "bold reverse" if name == self._active else ""
            line.append(f" {key} ", style="bold " + ("reverse" if name == self._active else "dim"))
            line.append(f"{label} ", style=style)
            line.append(" ")
        return line


def _rank(binding_id: str | None) -> int:
    return FOOTER_ORDER.index(binding_id) if binding_id in FOOTER_ORDER else len(FOOTER_ORDER)


class KeyFooter(Footer):
    """Textual's footer, ordered by FOOTER_ORDER, showing only keys that fit whole."""

    DEFAULT_CSS = """
    KeyFooter FooterKey.-command-palette { width: auto; }
    """

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._width = 0

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        self._width = width = self.app.size.width
        active = self.screen.active_bindings
        palette_key = self.app.COMMAND_PALETTE_BINDING if self.app.ENABLE_COMMAND_PALETTE else ""
        items, actions = [], set()
        for key, (_, binding, enabled, tooltip) in active.items():
            if not binding.show or key == palette_key or binding.action in actions:
                continue
            actions.add(binding.action)
            items.append((binding, enabled, tooltip))
        items.sort(key=lambda item: _rank(item[0].id))
        room = width
        palette = active.get(palette_key) if palette_key else None
        if palette is not None:
            room -= 2 + cell_len(self.app.get_key_display(palette.binding) + palette.binding.description)
        for binding, enabled, tooltip in items:
            display = self.app.get_key_display(binding)
            need = cell_len(display) + 1 + cell_len(binding.description) + 1
            if need > room:
                continue
            room -= need
            yield FooterKey(binding.key, display, binding.description, binding.action,
                            disabled=not enabled, tooltip=tooltip).data_bind(compact=Footer.compact)
        if palette is not None:
            yield FooterKey(palette.binding.key, self.app.get_key_display(palette.binding),
                            palette.binding.description, palette.binding.action,
                            classes="-command-palette", disabled=not palette.enabled,
                            tooltip=palette.binding.description).data_bind(compact=Footer.compact)

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and self.app.size.width != self._width:
            self.call_after_refresh(self.recompose)
