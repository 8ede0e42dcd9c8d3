"""Baseline for first paint: the smallest Textual app (one Static), no qwentui at all."""

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class Minimal(App):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Ask Qwen (minimal Textual app)")
        yield Footer()


if __name__ == "__main__":
    Minimal().run()
