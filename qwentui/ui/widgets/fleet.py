"""Fleet pane: one block per worker behind the gateway (up/down as smg sees it, running,
queued, KV %, tok/s, cost) and the gateway's routing counters.

Presentation plus its own polling: give it a `FleetSampler` (telemetry/fleet.py) and it
samples every `interval` seconds while mounted; or set `snapshot` directly (tests).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive

from qwentui.telemetry.fleet import FleetSnapshot, WorkerRow
from qwentui.telemetry.na import NA
from qwentui.ui.widgets.gpu import Line, kv_style


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return "n/a" if value is NA else fmt.format(value)


def short_url(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def worker_text(r: WorkerRow) -> Text:
    """Two lines: state and address, then the numbers (or why there are none)."""
    up = r.up
    text = Text()
    text.append("● " if up else "○ ", style="bold green" if up else "bold red")
    text.append(short_url(r.url), style="bold")
    if r.gateway_up is False:
        text.append("  down (gateway)", style="red")
    elif not r.reachable:
        text.append("  unreachable", style="red")
    text.append("\n  ")
    if not r.reachable:
        text.append(r.error or "no metrics", style="dim")
    else:
        text.append("run ", style="bold")
        text.append(_num(r.running))
        text.append(" queue ", style="bold")
        text.append(_num(r.queued), style="yellow" if r.queued is not NA and r.queued > 0 else "")
        text.append(" KV ", style="bold")
        text.append(_num(r.kv_pct, "{:.0f}%"), style=kv_style(r.kv_pct / 100 if r.kv_pct is not NA else NA))
        text.append(f" {_num(r.tokens_per_s)} tok/s")
    text.append(f"\n  {r.cost}", style="dim")
    return text


def gateway_text(snap: FleetSnapshot) -> Text:
    gw = snap.gateway
    text = Text()
    text.append("GATEWAY ", style="bold")
    text.append(short_url(snap.gateway_url))
    text.append(f"  {snap.up_count}/{len(snap.rows)} up",
                style="green" if snap.up_count == len(snap.rows) else "bold yellow")
    text.append("\n")
    if not gw.available:
        text.append(f"metrics unavailable: {gw.error}", style="yellow")
        return text
    text.append("routed ", style="bold")
    text.append(f"{gw.requests_total:.0f}")
    text.append("  errors ", style="bold")
    text.append(f"{gw.upstream_errors_total:.0f}", style="red" if gw.upstream_errors_total else "")
    text.append("  retries ", style="bold")
    text.append(f"{gw.retries_total:.0f}")
    return text


class FleetPane(Vertical):
    """The fleet view, shown beside (or, on narrow terminals, tabbed with) the GPU pane."""

    DEFAULT_CSS = """
    FleetPane { height: auto; padding: 0 1; }
    FleetPane #fleet-title { text-style: bold; }
    FleetPane .fleet-worker { margin-top: 1; }
    """

    snapshot: reactive[FleetSnapshot | None] = reactive(None, init=False, repaint=False)

    def __init__(self, sampler: Any = None, *, interval: float = 1.0, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.sampler, self.interval = sampler, interval
        self._gateway = Line(Text("FLEET: waiting for the first reading…", style="dim"), id="fleet-title")
        self._rows = Vertical(id="fleet-rows")
        self._rows.styles.height = "auto"

    def compose(self) -> ComposeResult:
        yield self._gateway
        yield self._rows

    def on_mount(self) -> None:
        if self.sampler is not None:
            self.set_interval(self.interval, self._tick)
            self.call_after_refresh(self._tick)
        if self.snapshot is not None:
            self._show(self.snapshot)

    def on_show(self) -> None:
        if self.sampler is not None:
            self._tick()  # a hidden tab (80x24) does not sample: catch up when shown

    def _tick(self) -> None:
        if not self.region:  # not on screen: no scrapes while idle in another tab
            return
        # the function, not a coroutine: an exclusive worker replaced before it ran leaves none behind
        self.run_worker(self._sample, group="fleet-sample", exclusive=True, exit_on_error=False)

    async def _sample(self) -> None:
        self.snapshot = await self.sampler.sample()

    async def on_unmount(self) -> None:
        if self.sampler is not None:
            await self.sampler.aclose()

    def watch_snapshot(self, snap: FleetSnapshot | None) -> None:
        if snap is not None and self.is_mounted:
            self._show(snap)

    def _show(self, snap: FleetSnapshot) -> None:
        self._gateway.text = gateway_text(snap)
        lines = [w for w in self._rows.children if isinstance(w, Line)]
        if len(lines) != len(snap.rows):
            self._rows.remove_children()
            self._rows.mount_all(Line(worker_text(r), classes="fleet-worker") for r in snap.rows)
            return
        for line, r in zip(lines, snap.rows):
            line.text = worker_text(r)
