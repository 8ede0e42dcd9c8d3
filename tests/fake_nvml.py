"""A scriptable stand-in for the `pynvml` module (nvidia-ml-py 13.x).

Same function names, constants and error classes as pynvml, but its own error
hierarchy, so code that catches `pynvml.NVMLError` instead of `module.NVMLError` fails
the tests. Devices are plain dataclasses the test edits between samples. Every call
records the calling thread so tests can assert NVML never runs on the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

_ERRORS = {
    1: "Uninitialized", 3: "NotSupported", 4: "NoPermission", 9: "DriverNotLoaded",
    10: "Timeout", 12: "LibraryNotFound", 13: "FunctionNotFound", 15: "GpuIsLost",
    16: "ResetRequired", 18: "LibRmVersionMismatch", 28: "GpuNotFound", 999: "Unknown",
}


class NVMLError(Exception):
    value = 999

    def __str__(self) -> str:
        return _ERRORS.get(self.value, "Unknown Error")


def _error_class(code: int, name: str) -> type[NVMLError]:
    return type(f"NVMLError_{name}", (NVMLError,), {"value": code})


for _code, _name in _ERRORS.items():
    globals()[f"NVMLError_{_name}"] = _error_class(_code, _name)

NVMLError_NotSupported: type[NVMLError]
NVMLError_LibraryNotFound: type[NVMLError]
NVMLError_GpuIsLost: type[NVMLError]
NVMLError_DriverNotLoaded: type[NVMLError]
NVMLError_Uninitialized: type[NVMLError]
NVMLError_LibRmVersionMismatch: type[NVMLError]
NVMLError_FunctionNotFound: type[NVMLError]

GiB = 1024**3


@dataclass
class FakeDevice:
    name: str = "NVIDIA A10G"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total: int = 24 * GiB
    memory_used: int = 1 * GiB
    util_gpu: int = 0
    util_mem: int = 0
    temperature: int = 40
    power_mw: int = 60_000
    power_limit_mw: int = 300_000
    clock_sm: int = 1710
    clock_mem: int = 6251
    # (pid, used bytes or None) as nvmlDeviceGetComputeRunningProcesses reports them
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    # function name -> error class raised by that call on this device
    errors: dict[str, type[NVMLError]] = field(default_factory=dict)
    lost: bool = False


class FakeNvml:
    """Pass an instance as `Nvml(module=FakeNvml(...))`."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM

    def __init__(self, devices: list[FakeDevice] | None = None, *,
                 init_error: type[NVMLError] | None = None, driver: str = "550.54.15") -> None:
        self.devices = [FakeDevice()] if devices is None else devices
        self.init_error = init_error
        self.driver = driver
        self.initialized = 0
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __getattr__(self, name: str):  # error classes: fake.NVMLError_GpuIsLost
        if name.startswith("NVMLError_") and name in globals():
            return globals()[name]
        raise AttributeError(name)

    def _enter(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)
            self.threads.add(threading.get_ident())
        if not self.initialized and name not in ("nvmlInit", "nvmlShutdown"):
            raise NVMLError_Uninitialized()

    def _device(self, handle: int, name: str) -> FakeDevice:
        self._enter(name)
        dev = self.devices[handle]
        if dev.lost:
            raise NVMLError_GpuIsLost()
        if name in dev.errors:
            raise dev.errors[name]()
        return dev

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error()
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        if not self.initialized:
            raise NVMLError_Uninitialized()
        self.initialized -= 1
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._enter("nvmlDeviceGetHandleByIndex")
        if self.devices[index].lost:
            raise NVMLError_GpuIsLost()
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._device(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._device(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetMemoryInfo(self, handle: int):
        d = self._device(handle, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=d.memory_total, used=d.memory_used, free=d.memory_total - d.memory_used)

    def nvmlDeviceGetUtilizationRates(self, handle: int):
        d = self._device(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=d.util_gpu, memory=d.util_mem)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == NVML_TEMPERATURE_GPU
        return self._device(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._device(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._device(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        d = self._device(handle, "nvmlDeviceGetClockInfo")
        return d.clock_sm if kind == NVML_CLOCK_SM else d.clock_mem

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int):
        d = self._device(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF,
                                computeInstanceId=0xFFFFFFFF) for pid, used in d.processes]
