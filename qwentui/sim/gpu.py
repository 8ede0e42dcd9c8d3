"""`--sim-gpu CLASS`: a simulated GPU's NVML-shaped readings for the demo, labelled SIMULATED.

The readings ride on `/metrics` as `qwentui_sim_gpu_*` gauges (one scrape, no extra
endpoint). The port is closed while "loading", as with SGLang, so they start at bind time,
when weights, KV pool and CUDA graphs are already allocated: the rise during loading that
NVML shows on a real box is not visible here.
qwentui's sampler turns them into the same NvmlSnapshot a real card gives, and only when
the engine is the simulator and NVML sees no GPU. Numbers follow the simulated engine:
memory = CUDA context + weights + KV pool + CUDA graphs once loaded, plus an activation
workspace that grows with running requests and KV usage; utilisation follows the token
rate; power follows utilisation; temperature lags power.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from qwentui.sim.engine import Engine

GIB = 1024 ** 3
MIB = 1024 ** 2
PREFIX = "qwentui_sim_gpu_"


@dataclass(frozen=True)
class Card:
    """Public NVML-visible specs: total memory as nvidia-smi reports it, power limit, clocks."""

    name: str
    total_mib: int
    power_limit_w: float
    idle_w: float
    sm_idle_mhz: int
    sm_max_mhz: int
    mem_mhz: int
    auto_fraction: float  # SGLang's own mem_fraction_static for the card (memory_hook.py)


CARDS = {
    "T4": Card("Tesla T4", 15360, 70, 10, 300, 1590, 5000, 0.735),
    "L4": Card("NVIDIA L4", 23034, 72, 16, 210, 2040, 6251, 0.684),
    "A10G": Card("NVIDIA A10G", 23028, 300, 25, 210, 1710, 6251, 0.684),
    "A100": Card("NVIDIA A100-SXM4-40GB", 40960, 400, 55, 210, 1410, 1215, 0.823),
    "H100": Card("NVIDIA H100 80GB HBM3", 81559, 700, 70, 345, 1980, 2619, 0.830),
}
CONTEXT_MIB = 420  # CUDA context + cuBLAS workspace of one process
GRAPHS_MIB = 250  # decode CUDA graphs of a 1.7B model


def card_for(name: str) -> Card:
    key = name.strip().upper()
    if key not in CARDS:
        raise ValueError(f"unknown --sim-gpu {name!r}; choose one of {', '.join(CARDS)}")
    return CARDS[key]


class SimGpu:
    """Computes readings on demand from the engine's state and the time since start."""

    def __init__(self, card: Card, engine: "Engine", mem_fraction: float | None = None,
                 clock=time.monotonic) -> None:
        self.card, self.engine, self._clock = card, engine, clock
        # weights + KV pool = mem_fraction_static x total, as SGLang sizes its static pool
        self.static_bytes = (mem_fraction or card.auto_fraction) * card.total_mib * MIB
        self._temp = 34.0
        self._at = clock()

    def _utilization(self) -> float:
        """NVML's utilisation is the share of the last sample period (up to 1 s) in which a
        kernel ran: here the share of the last second spent decoding, heavier with a batch."""
        e = self.engine
        tokens_per_s = e.gen_throughput(window=1.0)
        busy = min(tokens_per_s / max(e.rate, 1.0), 1.0)
        batch = min(tokens_per_s / max(e.rate * 8, 1.0), 1.0)
        return 100.0 * busy * (0.55 + 0.45 * batch)

    def engine_bytes(self) -> int:
        e = self.engine
        static = CONTEXT_MIB * MIB + self.static_bytes + GRAPHS_MIB * MIB
        usage = e.used_tokens() / max(e.res.max_total_tokens, 1)
        workspace = (64 + 24 * e.running) * MIB + usage * 512 * MIB
        return int(min(static + workspace, self.card.total_mib * MIB * 0.98))

    def readings(self) -> dict[str, float]:
        now = self._clock()
        util = self._utilization()
        power = self.card.idle_w + (self.card.power_limit_w - self.card.idle_w) * util / 100 * 0.92
        target = 34.0 + 40.0 * power / self.card.power_limit_w
        self._temp += (target - self._temp) * (1 - math.exp(-(now - self._at) / 20.0))  # 20 s thermal lag
        self._at = now
        used = self.engine_bytes() + 3 * MIB  # the driver's own reservation
        sm = self.card.sm_idle_mhz + (self.card.sm_max_mhz - self.card.sm_idle_mhz) * min(util / 50, 1.0)
        return {"memory_used_bytes": used, "memory_total_bytes": self.card.total_mib * MIB,
                "engine_memory_bytes": self.engine_bytes(), "utilization_gpu_pct": round(util),
                "utilization_memory_pct": round(util * 0.6), "temperature_c": round(self._temp),
                "power_mw": round(power * 1000), "power_limit_mw": round(self.card.power_limit_w * 1000),
                "clock_sm_mhz": round(sm), "clock_mem_mhz": self.card.mem_mhz}


class SimGpuCollector:
    """The readings as gauges; `name` and `simulated="true"` labels say what they are."""

    def __init__(self, gpu: SimGpu) -> None:
        self.gpu = gpu

    def collect(self):
        labels = {"gpu": "0", "name": self.gpu.card.name, "simulated": "true"}
        for key, value in self.gpu.readings().items():
            g = GaugeMetricFamily(PREFIX + key, f"SIMULATED GPU reading {key} (qwentui simulator)",
                                  labels=list(labels))
            g.add_metric(list(labels.values()), value)
            yield g
