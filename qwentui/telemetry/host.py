"""Host CPU/RAM, the engine process tree's CPU and RSS, and boot time (what instance billing counts from)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import psutil

from qwentui.telemetry.na import NA, Maybe, plain


@dataclass(frozen=True)
class HostSample:
    cpu_pct: Maybe[float]  # whole host, 0-100 (NA on the very first sample)
    mem_used: Maybe[int]  # bytes (total - available)
    mem_total: Maybe[int]  # bytes
    engine_cpu_pct: Maybe[float]  # sum over the engine's processes; 100 = one core
    engine_rss: Maybe[int]  # bytes, summed over the engine's processes
    boot_time: Maybe[float]  # epoch seconds
    engine_procs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


class Host:
    """Keeps psutil.Process objects between samples: cpu_percent() measures since the last call."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._primed = False
        self._boot_time = psutil.boot_time()

    def sample(self, engine_pids: Iterable[int] = ()) -> HostSample:
        cpu: Maybe[float] = psutil.cpu_percent(interval=None)
        if not self._primed:  # the first call has nothing to compare with and returns 0.0
            self._primed, cpu = True, NA
        mem = psutil.virtual_memory()
        engine_cpu, engine_rss, count = self._engine(set(engine_pids))
        return HostSample(cpu_pct=cpu, mem_used=mem.total - mem.available, mem_total=mem.total,
                          engine_cpu_pct=engine_cpu, engine_rss=engine_rss,
                          boot_time=self._boot_time, engine_procs=count)

    def _engine(self, pids: set[int]) -> tuple[Maybe[float], Maybe[int], int]:
        for gone in set(self._procs) - pids:
            del self._procs[gone]
        if not pids:
            return NA, NA, 0
        cpu, rss, count, fresh = 0.0, 0, 0, False
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    fresh = True
                with proc.oneshot():
                    cpu += proc.cpu_percent(interval=None)
                    rss += proc.memory_info().rss
                count += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
        if count == 0:
            return NA, NA, 0
        return (NA if fresh else cpu), rss, count


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (empty if it is gone)."""
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port, if this user may see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None
