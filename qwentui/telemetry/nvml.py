"""GPU readings through NVML (pynvml from nvidia-ml-py), behind one gateway.

Follows nvitop's libnvml: `_query()` is the only place NVML is called; it starts NVML on
first use, turns an NVMLError into `NA`, and logs a missing function once. A sample reads
every field of every GPU in one go (no lazy NVML calls later) and returns frozen
dataclasses with units in the names. No NVML, no GPU and a lost GPU are states, not
exceptions. The calls block (some take milliseconds), so callers run `sample()` in a
worker thread; the sampler does.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable

from qwentui.telemetry.na import NA, Maybe, plain

log = logging.getLogger(__name__)

GPU_CLASSES = ("T4", "L4", "A10G", "A100", "H100")
# Errors that mean the device itself is gone, not that one reading is unsupported.
_GONE_ERRORS = ("NVMLError_GpuIsLost", "NVMLError_GpuNotFound", "NVMLError_ResetRequired")
# Newest first; older drivers lack the _v3 entry point the unversioned name maps to.
_PROCESS_FUNCS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2")


def gpu_class(name: str) -> str:
    """"Tesla T4" → "T4", "NVIDIA A100-SXM4-40GB" → "A100", "NVIDIA L40S" → "other"."""
    tokens = set(re.split(r"[^A-Z0-9]+", name.upper()))
    for cls in ("A100", "H100", "A10G", "T4", "L4"):
        if cls in tokens:
            return cls
    if "A10" in tokens:  # the non-G A10 is the same GA102 24 GB card class as AWS's A10G
        return "A10G"
    return "other"


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment. Any reading may be NA (unsupported or failed)."""

    index: int
    name: str
    gpu_class: str
    uuid: Maybe[str] = NA
    memory_used_bytes: Maybe[int] = NA
    memory_total_bytes: Maybe[int] = NA
    util_gpu_pct: Maybe[int] = NA
    util_mem_pct: Maybe[int] = NA
    temperature_c: Maybe[int] = NA
    power_mw: Maybe[int] = NA
    power_limit_mw: Maybe[int] = NA
    clock_sm_mhz: Maybe[int] = NA
    clock_mem_mhz: Maybe[int] = NA
    engine_memory_bytes: Maybe[int] = NA
    # "process": NVML per-process memory of the engine's PIDs; "baseline": device memory
    # growth since Nvml.mark_baseline() (containers, where NVML sees host PIDs);
    # "none": no engine running; "unknown": neither works.
    engine_memory_source: str = "unknown"
    status: str = "ok"  # "ok" | "lost" | "error"
    message: str = ""
    simulated: bool = False  # the simulator's --sim-gpu card

    @property
    def other_memory_bytes(self) -> Maybe[int]:
        """Memory in use by anything but the engine."""
        if self.memory_used_bytes is NA:
            return NA
        if self.engine_memory_bytes is NA:
            return self.memory_used_bytes
        return max(0, self.memory_used_bytes - self.engine_memory_bytes)

    def to_dict(self) -> dict[str, Any]:
        return plain({**asdict(self), "other_memory_bytes": self.other_memory_bytes})


@dataclass(frozen=True)
class NvmlSnapshot:
    status: str  # "ok" | "no-nvml" | "no-gpu" | "error"
    gpus: tuple[GpuSample, ...] = ()
    message: str = ""
    driver_version: Maybe[str] = NA
    simulated: bool = False  # readings of the simulator's --sim-gpu card, not of NVML

    @property
    def available(self) -> bool:
        return self.status == "ok" and bool(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "simulated": self.simulated,
                "driver_version": plain(self.driver_version),
                "gpus": [g.to_dict() for g in self.gpus]}


_SIM_FIELDS = {"memory_used_bytes": "memory_used_bytes", "memory_total_bytes": "memory_total_bytes",
               "engine_memory_bytes": "engine_memory_bytes", "utilization_gpu_pct": "util_gpu_pct",
               "utilization_memory_pct": "util_mem_pct", "temperature_c": "temperature_c",
               "power_mw": "power_mw", "power_limit_mw": "power_limit_mw", "clock_sm_mhz": "clock_sm_mhz",
               "clock_mem_mhz": "clock_mem_mhz"}


def simulated_snapshot(name: str, readings: Iterable[tuple[str, float]]) -> NvmlSnapshot:
    """The simulator's `--sim-gpu` readings as the snapshot NVML would give (SIMULATED)."""
    values = {_SIM_FIELDS[k]: int(v) for k, v in readings if k in _SIM_FIELDS}
    gpu = GpuSample(index=0, name=name or "simulated GPU", gpu_class=gpu_class(name or ""),
                    engine_memory_source="process", simulated=True, **values)
    return NvmlSnapshot("ok", (gpu,), message="SIMULATED GPU (qwentui simulator --sim-gpu)", simulated=True)


class _DeviceGone(Exception):
    pass


def _init_failure(module: Any, exc: Exception) -> NvmlSnapshot:
    """Map an nvmlInit() error to a state with a message a person can act on."""
    def isa(name: str) -> bool:
        cls = getattr(module, name, None)
        return isinstance(cls, type) and isinstance(exc, cls)

    if isa("NVMLError_LibraryNotFound"):
        return NvmlSnapshot("no-nvml", message="NVML library not found (no NVIDIA driver on this machine)")
    if isa("NVMLError_DriverNotLoaded"):
        return NvmlSnapshot("no-gpu", message="NVIDIA driver not loaded")
    if isa("NVMLError_LibRmVersionMismatch"):
        return NvmlSnapshot("error", message="NVML/driver version mismatch (reboot after a driver upgrade)")
    if isa("NVMLError_NoPermission"):
        return NvmlSnapshot("error", message="no permission to use NVML")
    return NvmlSnapshot("error", message=f"NVML init failed: {exc}")


class Nvml:
    """Lazily initialised NVML session; thread-safe; `close()` (also at exit) shuts it down.

    `module` is the pynvml module, or a fake with the same names (tests). A failed
    start-up is retried at most every `retry_after` seconds, so sampling a GPU-less
    box once a second costs nothing.
    """

    def __init__(self, module: Any = None, *, clock: Callable[[], float] = time.monotonic,
                 retry_after: float = 60.0) -> None:
        self._module = module
        self._clock = clock
        self._retry_after = retry_after
        self._lock = threading.RLock()
        self._ready = False
        self._failure: NvmlSnapshot | None = None
        self._failed_at = 0.0
        self._handles: list[Any] = []
        self._static: list[dict[str, Any]] = []
        self._driver: Maybe[str] = NA
        self._baseline: dict[int, int] = {}
        self._missing: set[str] = set()
        self._errors: tuple[type, ...] = ()
        self._gone: tuple[type, ...] = ()

    # -- the gateway ---------------------------------------------------------------
    def _query(self, func: str, *args: Any, default: Any = NA) -> Any:
        """Call `module.<func>(*args)`; NVMLError → `default`; a lost GPU raises _DeviceGone."""
        module = self._module
        fn = getattr(module, func, None)
        if fn is None:
            if func not in self._missing and len(self._missing) < 1024:
                self._missing.add(func)
                log.info("NVML function %s not available in this pynvml", func)
            return default
        try:
            value = fn(*args)
        except self._errors as exc:
            if isinstance(exc, self._gone):
                raise _DeviceGone(str(exc) or "GPU is lost") from None
            return default
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        return value

    def _error_classes(self, module: Any) -> None:
        def classes(names: Iterable[str]) -> tuple[type, ...]:
            found = (getattr(module, n, None) for n in names)
            return tuple(c for c in found if isinstance(c, type) and issubclass(c, BaseException))

        # NVMLLibraryMismatchError: an unversioned call the installed driver lacks.
        self._errors = classes(("NVMLError", "NVMLLibraryMismatchError"))
        self._gone = classes(_GONE_ERRORS)

    # -- life cycle ----------------------------------------------------------------
    def _load_module(self) -> Any:
        if self._module is None:
            import pynvml  # noqa: PLC0415 - optional at runtime, imported on first use

            self._module = pynvml
        return self._module

    def _ensure_init(self) -> NvmlSnapshot | None:
        """None when NVML is up; otherwise the snapshot that says why not."""
        if self._ready:
            return None
        if self._failure is not None and self._clock() - self._failed_at < self._retry_after:
            return self._failure
        try:
            module = self._load_module()
            self._error_classes(module)
            module.nvmlInit()
        except ImportError:
            return self._fail(NvmlSnapshot("no-nvml", message="pynvml not installed (pip install nvidia-ml-py)"))
        except Exception as exc:  # noqa: BLE001 - NVMLError or a broken library
            if isinstance(exc, self._errors):
                return self._fail(_init_failure(self._module, exc))
            return self._fail(NvmlSnapshot("error", message=f"NVML init failed: {exc}"))
        self._ready, self._failure = True, None
        atexit.register(self.close)
        self._discover()
        return None

    def _fail(self, snapshot: NvmlSnapshot) -> NvmlSnapshot:
        self._failure, self._failed_at = snapshot, self._clock()
        return snapshot

    def _discover(self) -> None:
        """Read what doesn't change while NVML is up: driver, handles, names, limits."""
        self._driver = self._query("nvmlSystemGetDriverVersion")
        try:
            count = self._query("nvmlDeviceGetCount", default=0)
        except _DeviceGone:
            count = 0
        self._handles, self._static = [], []
        for index in range(count):
            handle, static = self._discover_one(index)
            self._handles.append(handle)
            self._static.append(static)

    def _discover_one(self, index: int) -> tuple[Any, dict[str, Any]]:
        """(handle or None if the GPU is already gone, its slow-changing fields)."""
        unknown = {"name": "unknown GPU", "uuid": NA, "power_limit_mw": NA}
        try:
            handle = self._query("nvmlDeviceGetHandleByIndex", index, default=None)
            if handle is None:
                return None, {**unknown, "status": "error", "message": "NVML cannot open this GPU"}
            return handle, {"name": self._query("nvmlDeviceGetName", handle, default="unknown GPU"),
                            "uuid": self._query("nvmlDeviceGetUUID", handle),
                            "power_limit_mw": self._query("nvmlDeviceGetEnforcedPowerLimit", handle)}
        except _DeviceGone as exc:
            return None, {**unknown, "status": "lost", "message": str(exc)}

    def close(self) -> None:
        """Shut NVML down (idempotent); the next sample starts it again."""
        with self._lock:
            if not self._ready:
                return
            self._ready = False
            atexit.unregister(self.close)
            try:
                self._module.nvmlShutdown()
            except Exception as exc:  # noqa: BLE001 - shutting down must not fail
                log.debug("nvmlShutdown failed: %s", exc)

    # -- public readings -----------------------------------------------------------
    def sample(self, engine_pids: Iterable[int] = ()) -> NvmlSnapshot:
        """Every GPU, read once. Never raises."""
        pids = frozenset(engine_pids)
        with self._lock:
            try:
                failure = self._ensure_init()
                if failure is not None:
                    return failure
                if not self._handles:
                    return NvmlSnapshot("no-gpu", message="NVML sees no GPU", driver_version=self._driver)
                read = [self._read(i, bool(pids)) for i in range(len(self._handles))]
                gpus = tuple(self._attribute([r[0] for r in read], [r[1] for r in read], pids))
            except Exception as exc:  # noqa: BLE001 - a telemetry failure is a state
                log.debug("NVML sample failed", exc_info=True)
                return NvmlSnapshot("error", message=f"NVML error: {exc}", driver_version=self._driver)
        return NvmlSnapshot("ok", gpus, driver_version=self._driver)

    def mark_baseline(self) -> dict[int, int]:
        """Remember device memory in use now (call just before launching the engine).

        Where NVML can't see the engine's PIDs (containers), the engine's share is the
        growth since this baseline and everything else is "other".
        """
        with self._lock:
            snap = self.sample()
            self._baseline = {g.index: g.memory_used_bytes for g in snap.gpus
                              if g.memory_used_bytes is not NA}
            return dict(self._baseline)

    def gpu_names(self) -> list[str]:
        """Names of the visible GPUs ([] without NVML); e.g. for preset = "auto"."""
        with self._lock:
            if self._ensure_init() is not None:
                return []
            return [s["name"] for s in self._static]

    def inventory(self) -> "GpuReport":
        """Names, total memory and compute capability of every GPU (preset choice, doctor).
        Never raises: no NVML, no GPU and errors are states."""
        with self._lock:
            try:
                failure = self._ensure_init()
                if failure is not None:
                    return GpuReport(failure.status, message=failure.message)
                gpus = tuple(self._info(i) for i in range(len(self._handles)))
                cuda = self._query("nvmlSystemGetCudaDriverVersion", default=None)
            except Exception as exc:  # noqa: BLE001 - a lost GPU must not crash the caller
                return GpuReport("error", message=f"NVML error: {exc}")
        driver = "" if self._driver is NA else str(self._driver)
        cuda_text = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if isinstance(cuda, int) else ""
        return GpuReport("ok" if gpus else "no-gpu", gpus, driver, cuda_text, "" if gpus else "NVML sees no GPU")

    def _info(self, index: int) -> "GpuInfo":
        static, handle = self._static[index], self._handles[index]
        mem = self._query("nvmlDeviceGetMemoryInfo", handle) if handle is not None else NA
        if mem is NA:
            raise RuntimeError(static.get("message") or f"cannot read the memory of GPU {index}")
        cc = self._query("nvmlDeviceGetCudaComputeCapability", handle, default=None)
        return GpuInfo(index, static["name"], int(mem.total), tuple(cc) if cc is not None else None)

    # -- one device ----------------------------------------------------------------
    def _read(self, index: int, want_procs: bool) -> tuple[GpuSample, Any]:
        """(sample without engine attribution, compute processes or NA)."""
        static, handle = self._static[index], self._handles[index]
        base = GpuSample(index=index, name=static["name"], gpu_class=gpu_class(static["name"]),
                         uuid=static["uuid"], power_limit_mw=static["power_limit_mw"])
        if handle is None:
            return replace(base, status=static["status"], message=static["message"]), NA
        try:
            return self._read_device(base, handle), self._processes(handle) if want_procs else NA
        except _DeviceGone as exc:
            return replace(base, status="lost", message=str(exc)), NA

    def _read_device(self, base: GpuSample, handle: Any) -> GpuSample:
        q, m = self._query, self._module
        mem = q("nvmlDeviceGetMemoryInfo", handle)
        util = q("nvmlDeviceGetUtilizationRates", handle)
        return replace(
            base,
            memory_used_bytes=mem.used if mem is not NA else NA,
            memory_total_bytes=mem.total if mem is not NA else NA,
            util_gpu_pct=util.gpu if util is not NA else NA,
            util_mem_pct=util.memory if util is not NA else NA,
            temperature_c=q("nvmlDeviceGetTemperature", handle, getattr(m, "NVML_TEMPERATURE_GPU", 0)),
            power_mw=q("nvmlDeviceGetPowerUsage", handle),
            clock_sm_mhz=q("nvmlDeviceGetClockInfo", handle, getattr(m, "NVML_CLOCK_SM", 1)),
            clock_mem_mhz=q("nvmlDeviceGetClockInfo", handle, getattr(m, "NVML_CLOCK_MEM", 2)),
        )

    def _processes(self, handle: Any) -> Any:
        for func in _PROCESS_FUNCS:
            procs = self._query(func, handle)
            if procs is not NA:
                return procs
        return NA

    def _attribute(self, samples: list[GpuSample], procs: list[Any], pids: frozenset[int]) -> list[GpuSample]:
        """Fill in the engine's share of each GPU's memory.

        If NVML shows any engine PID on any GPU, PIDs are trustworthy here and a GPU
        without them holds none of the engine. Otherwise (containers: NVML reports host
        PIDs) fall back to growth since the baseline.
        """
        per_gpu = [[p.usedGpuMemory for p in ps if p.pid in pids] if ps is not NA else [] for ps in procs]
        by_pid = any(per_gpu)
        out = []
        for g, mine in zip(samples, per_gpu):
            if g.status != "ok":
                out.append(g)  # a lost GPU reads nothing: engine share stays NA/"unknown"
            elif not pids:
                out.append(replace(g, engine_memory_bytes=0, engine_memory_source="none"))
            else:
                out.append(self._by_process(g, mine) if by_pid else self._by_baseline(g))
        return out

    def _by_process(self, g: GpuSample, mine: list[Any]) -> GpuSample:
        if all(isinstance(m, int) for m in mine):
            return replace(g, engine_memory_bytes=sum(mine), engine_memory_source="process")
        return self._by_baseline(g)  # WDDM-style "not available" per-process values

    def _by_baseline(self, g: GpuSample) -> GpuSample:
        base = self._baseline.get(g.index)
        if base is None or g.memory_used_bytes is NA:
            return replace(g, engine_memory_bytes=NA, engine_memory_source="unknown")
        return replace(g, engine_memory_bytes=max(0, g.memory_used_bytes - base), engine_memory_source="baseline")


# --- Inventory for preset choice and doctor: one probe of names, memory, compute capability.
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


def probe(nvml: Any = None) -> GpuReport:
    """One inventory through the gateway (`nvml`: pynvml or a stand-in with its names)."""
    gateway = Nvml(nvml)
    try:
        return gateway.inventory()
    finally:
        gateway.close()


def detect_gpu_name(nvml: Any = None) -> str | None:
    """Name of GPU 0 (the one a tp=1 engine uses), or None without NVML/GPU."""
    report = probe(nvml)
    return report.gpus[0].name if report.gpus else None
