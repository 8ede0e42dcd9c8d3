"""GPU name and class for preset choice; tolerates a box without NVML.

The class names ("T4", "L4", "A10G", "A100", "H100", "other") and the name → class
mapping live in `qwentui.telemetry.nvml` and are shared with the cost tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwentui.telemetry.nvml import GPU_CLASSES as CLASSES
from qwentui.telemetry.nvml import gpu_class

__all__ = ["CLASSES", "gpu_class", "probe", "detect_gpu_name", "GpuInfo", "GpuReport"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_bytes: int
    compute_capability: tuple[int, int] | None


@dataclass(frozen=True)
class GpuReport:
    status: str  # "ok" | "no-nvml" | "no-gpu" | "error"
    gpus: tuple[GpuInfo, ...] = ()
    driver: str = ""
    cuda: str = ""
    message: str = ""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def probe(nvml: Any = None) -> GpuReport:
    """Read the GPUs through pynvml (or an injected stand-in with the same functions)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as exc:
            return GpuReport("no-nvml", message=f"pynvml not importable: {exc}")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, driver missing, ...
        return GpuReport("no-nvml", message=f"NVML unavailable: {exc}")
    try:
        return _read(nvml)
    except Exception as exc:  # noqa: BLE001 - a lost GPU must not crash the caller
        return GpuReport("error", message=f"NVML error: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _read(nvml: Any) -> GpuReport:
    driver = _text(nvml.nvmlSystemGetDriverVersion())
    try:
        raw = int(nvml.nvmlSystemGetCudaDriverVersion())
        cuda = f"{raw // 1000}.{raw % 1000 // 10}"
    except Exception:  # noqa: BLE001 - older drivers lack the call
        cuda = ""
    gpus = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            cc = tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle))
        except Exception:  # noqa: BLE001
            cc = None
        gpus.append(GpuInfo(index, _text(nvml.nvmlDeviceGetName(handle)),
                            int(nvml.nvmlDeviceGetMemoryInfo(handle).total), cc))
    status = "ok" if gpus else "no-gpu"
    return GpuReport(status, tuple(gpus), driver, cuda, "" if gpus else "NVML sees no GPU")


def detect_gpu_name(nvml: Any = None) -> str | None:
    """Name of GPU 0 (the one a tp=1 engine uses), or None without NVML/GPU."""
    report = probe(nvml)
    return report.gpus[0].name if report.gpus else None
