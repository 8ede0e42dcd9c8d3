"""Telemetry: GPU (NVML), engine `/metrics` and host stats as frozen snapshots.

UI-free: the sampler hands `Snapshot`s to a callback; `ui/` and the `gpu` command present
them. Names are imported lazily so `from qwentui.telemetry.nvml import gpu_class` stays
cheap (httpx and prometheus_client load only with metrics/sampler).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NA": "na", "Maybe": "na", "NaType": "na", "is_na": "na",
    "GpuSample": "nvml", "Nvml": "nvml", "NvmlSnapshot": "nvml", "gpu_class": "nvml",
    "EngineMetrics": "metrics", "Histogram": "metrics", "parse": "metrics", "scrape": "metrics",
    "Host": "host", "HostSample": "host",
    "EngineRates": "sampler", "Sampler": "sampler", "Snapshot": "sampler", "rates_between": "sampler",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qwentui.telemetry' has no attribute {name!r}")
    return getattr(importlib.import_module(f"qwentui.telemetry.{module}"), name)
