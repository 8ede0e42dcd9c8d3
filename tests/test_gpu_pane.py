"""GPU pane: Pilot behaviour tests and SVG snapshots of every state, in a small _Host app."""

from __future__ import annotations

import dataclasses

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from qwentui.telemetry import NA, EngineMetrics, Histogram, HostSample, NvmlSnapshot, Snapshot
from qwentui.telemetry.nvml import GpuSample
from qwentui.telemetry.sampler import EngineRates
from qwentui.ui.widgets.gpu import (Bar, GpuCard, GpuPane, Line, Meter, Spark, gib, gpu_state_text, render_bar,
                                    spark)

GiB = 1024**3
HOST = HostSample(cpu_pct=12.0, mem_used=5 * GiB, mem_total=31 * GiB, engine_cpu_pct=101.0,
                  engine_rss=3 * GiB, boot_time=1_700_000_000.0, engine_procs=3)
ENGINE = EngineMetrics(available=True, running=3.0, queued=1.0, token_usage=0.41, gen_throughput=512.0,
                       cache_hit_rate=0.25, generation_tokens_total=10000.0, prompt_tokens_total=2000.0,
                       requests_total=20.0, ttft=Histogram(((0.1, 10.0), (float("inf"), 20.0)), 1.0, 20.0))


def a10g(**changes) -> GpuSample:
    base = GpuSample(index=0, name="NVIDIA A10G", gpu_class="A10G", uuid="GPU-1", memory_used_bytes=20 * GiB,
                     memory_total_bytes=24 * GiB, util_gpu_pct=37, util_mem_pct=12, temperature_c=62,
                     power_mw=148_000, power_limit_mw=300_000, clock_sm_mhz=1710, clock_mem_mhz=6251,
                     engine_memory_bytes=17 * GiB, engine_memory_source="process")
    return dataclasses.replace(base, **changes)


def snap(gpu: NvmlSnapshot | None = None, engine: EngineMetrics = ENGINE, *, seq: int = 1, simulated: bool = False,
         tps: float = 480.0) -> Snapshot:
    return Snapshot(at=1_700_003_600.0, gpu=gpu or NvmlSnapshot("ok", (a10g(),), driver_version="550.54.15"),
                    engine=engine, host=HOST, rates=EngineRates(generation_tokens_per_s=tps), simulated=simulated,
                    seq=seq)


NO_NVML = NvmlSnapshot("no-nvml", message="NVML library not found (no NVIDIA driver on this machine)")


class _Host(App):
    """The pane in a 42-column side column, as in the console layout."""

    CSS = """
    #main { width: 1fr; }
    #side { width: 42; border-left: vkey $panel-lighten-2; }
    """

    def __init__(self, snaps: list[Snapshot] | None = None) -> None:
        super().__init__()
        self.snaps = snaps or []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("chat", id="main")
            yield GpuPane(id="side")

    def on_mount(self) -> None:
        if self.snaps:
            self.query_one(GpuPane).set_history(self.snaps)


def ramp(n: int = 40, **kw) -> list[Snapshot]:
    """n ticks of rising then falling load, for sparklines."""
    out = []
    for i in range(n):
        level = i if i < n // 2 else n - i
        g = a10g(util_gpu_pct=min(100, level * 5))
        out.append(snap(NvmlSnapshot("ok", (g,), driver_version="550.54.15"), seq=i + 1, tps=level * 30.0, **kw))
    return out


def text_of(app: App, selector: str) -> str:
    return app.query_one(selector, Line).text.plain


# -- pure helpers --------------------------------------------------------------------------

def test_render_bar_segments_fit_the_width():
    t = render_bar(Bar("VRAM", ((0.5, "█", "cyan"), (0.25, "▓", "magenta")), "18/24G"), 33)
    assert t.plain == "VRAM  " + "█" * 8 + "▓" * 4 + "░" * 4 + "     18/24G" and len(t.plain) == 33
    assert render_bar(Bar("util", ((1.5, "█", ""),), "x"), 19).plain == "util  ██" + " " * 10 + "x"


def test_spark_and_gib():
    assert spark([0, 50, 100], 10, top=100) == "▁▅█"
    assert spark([5, 0, 10, 20], 3) == "▁▅█"  # the last `width` values, scaled to their max
    assert spark([], 5) == "" and spark([0, 0], 5) == "▁▁"
    assert (gib(17 * GiB), gib(512 * 1024**2), gib(NA)) == ("17.0G", "512M", "n/a")


@pytest.mark.parametrize("gpu, simulated, words", [
    (NO_NVML, True, "no GPU detected (simulated engine)"),
    (NO_NVML, False, "NVML unavailable\nNVML library not found"),
    (NvmlSnapshot("no-gpu", message="NVML sees no GPU"), False, "no GPU detected\nNVML sees no GPU"),
    (NvmlSnapshot("error", message="NVML error: boom"), False, "NVML error\nNVML error: boom"),
])
def test_state_texts(gpu, simulated, words):
    assert gpu_state_text(snap(gpu, simulated=simulated)).plain.startswith(words)


# -- Pilot -----------------------------------------------------------------------------------

async def test_pane_shows_gpu_and_engine():
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GpuPane)
        assert "waiting" in text_of(app, "#gpu-state")
        pane.snapshot = snap()
        await pilot.pause()
        assert not pane.has_class("-no-gpu")
        card = app.query_one(GpuCard)
        assert card.query_one(".title", Line).text.plain == "GPU 0 NVIDIA A10G"
        assert card.query_one(".vram", Meter).bar.suffix == "20.0/24.0G"
        assert "engine 17.0G" in card.query_one(".vram-detail", Line).text.plain
        assert "other 3.0G" in card.query_one(".vram-detail", Line).text.plain
        assert card.query_one(".power", Meter).bar.suffix == "148/300W"
        assert card.query_one(".temp", Meter).bar.suffix == "62°C"
        assert text_of(app, "#engine-counts") == "run 3  queue 1  hit 25%"
        assert app.query_one("#engine-kv", Meter).bar.suffix == " 41%"
        assert app.query_one("#engine-tps", Spark).data[3] == "480"


async def test_not_supported_readings_show_na():
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        g = a10g(power_mw=NA, power_limit_mw=NA, temperature_c=NA, util_gpu_pct=NA)
        app.query_one(GpuPane).snapshot = snap(NvmlSnapshot("ok", (g,)))
        await pilot.pause()
        card = app.query_one(GpuCard)
        assert [card.query_one(c, Meter).bar.suffix for c in (".power", ".temp", ".util")] == ["n/a"] * 3


async def test_states_switch_and_gpu_count_changes():
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GpuPane)
        pane.snapshot = snap(NO_NVML, simulated=True, seq=1)
        await pilot.pause()
        assert pane.has_class("-no-gpu") and text_of(app, "#gpu-state") == "no GPU detected (simulated engine)"
        two = NvmlSnapshot("ok", (a10g(), a10g(index=1, status="lost", message="GPU is lost",
                                               memory_used_bytes=NA, engine_memory_bytes=NA)))
        pane.snapshot = snap(two, seq=2)
        await pilot.pause()
        cards = list(app.query(GpuCard))
        assert len(cards) == 2 and not pane.has_class("-no-gpu")
        assert cards[1].has_class("-lost") and "GPU lost: GPU is lost" in cards[1].query_one(".title", Line).text.plain
        pane.snapshot = snap(seq=3)
        await pilot.pause()
        assert len(app.query(GpuCard)) == 1


async def test_metrics_unavailable_hides_engine_rows():
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GpuPane)
        pane.snapshot = snap(engine=EngineMetrics.unavailable("HTTP 404: engine started without --enable-metrics?"))
        await pilot.pause()
        assert pane.has_class("-no-metrics")
        assert "metrics unavailable: HTTP 404" in text_of(app, "#engine-title")
        assert not app.query_one("#engine-kv").display
        pane.snapshot = snap(seq=2)
        await pilot.pause()
        assert not pane.has_class("-no-metrics") and app.query_one("#engine-kv").display


async def test_only_changed_rows_repaint(monkeypatch):
    """A tick where only the temperature moved repaints the temp row and the sparklines."""
    painted: list[str] = []
    for cls in (Line, Meter, Spark):
        original = cls.render

        def counting(self, _original=original):
            painted.append(" ".join(sorted(self.classes)) or self.id or type(self).__name__)
            return _original(self)

        monkeypatch.setattr(cls, "render", counting)
    app = _Host()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GpuPane)
        pane.snapshot = snap(seq=1)
        await pilot.pause()
        pane.snapshot = snap(seq=2)  # same readings
        await pilot.pause()
        painted.clear()
        pane.snapshot = snap(NvmlSnapshot("ok", (a10g(temperature_c=63),)), seq=3)
        await pilot.pause()
    assert "temp" in painted
    assert not {"vram", "power", "util", "title", "engine-counts", "engine-kv"} & set(painted), painted


async def test_sparklines_come_from_history():
    app = _Host(ramp(20))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        values = app.query_one(".util-spark", Spark).data[1]
        assert len(values) == 20 and max(values) == 50
        assert app.query_one("#engine-tps", Spark).data[1][10] == 300.0


# -- snapshots (pytest-textual-snapshot) ----------------------------------------------------

def _app(*snaps: Snapshot) -> _Host:
    return _Host(list(snaps))


def test_snapshot_healthy_80x24(snap_compare):
    """You should see, in a 42-column side column: GPU 0 NVIDIA A10G with a VRAM bar (engine █ 17.0G,
    other ▓ 3.0G, 20.0/24.0G), a util bar at 37% with a rising-then-falling sparkline under it, temp 62°C,
    power 148/300W, then ENGINE with run 3 queue 1 hit 25%, KV 41% and a tok/s sparkline ending at 30."""
    assert snap_compare(_app(*ramp(40)), terminal_size=(80, 24))


def test_snapshot_healthy_120x40(snap_compare):
    """You should see the same pane as at 80x24 in a taller terminal, with SIMULATED next to ENGINE."""
    assert snap_compare(_app(*ramp(40, simulated=True)), terminal_size=(120, 40))


def test_snapshot_not_supported(snap_compare):
    """You should see temp and power reading n/a with empty bars; the engine's VRAM reads ~17.0G
    (estimated from the baseline)."""
    g = a10g(temperature_c=NA, power_mw=NA, power_limit_mw=NA, engine_memory_source="baseline")
    assert snap_compare(_app(snap(NvmlSnapshot("ok", (g,)))), terminal_size=(80, 24))


def test_snapshot_simulated_no_gpu(snap_compare):
    """You should see 'no GPU detected (simulated engine)' instead of GPU bars, then the ENGINE box
    marked SIMULATED with its counts, KV bar and tok/s."""
    assert snap_compare(_app(snap(NO_NVML, simulated=True)), terminal_size=(80, 24))


def test_snapshot_nvml_unavailable(snap_compare):
    """You should see 'NVML unavailable' and the reason on the next line, and the engine box."""
    assert snap_compare(_app(snap(NO_NVML)), terminal_size=(80, 24))


def test_snapshot_gpu_lost(snap_compare):
    """You should see two GPU cards: GPU 0 healthy, GPU 1 'GPU lost: GPU is lost' in red with no bars."""
    lost = a10g(index=1, name="Tesla T4", gpu_class="T4", status="lost", message="GPU is lost",
                memory_used_bytes=NA, engine_memory_bytes=NA)
    assert snap_compare(_app(snap(NvmlSnapshot("ok", (a10g(), lost)))), terminal_size=(80, 24))


def test_snapshot_metrics_unavailable(snap_compare):
    """You should see the GPU card, then ENGINE with 'metrics unavailable: timed out after 2s' and no
    engine rows."""
    assert snap_compare(_app(snap(engine=EngineMetrics.unavailable("timed out after 2s"))), terminal_size=(80, 24))


def test_text_is_comparable():
    assert Text("a", style="red") == Text("a", style="red")  # what Line's reactive relies on
