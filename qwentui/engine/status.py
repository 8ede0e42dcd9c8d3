"""The engine's state as frozen snapshots, for the UI, the CLI and the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EngineState(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    CRASHED = "crashed"


# Why an engine stopped: the first six come from callers of stop(); the rest are set by the
# supervisor itself ("timeout": start-up took too long, "external": it exited 0 on its own,
# "error": qwentui hit an exception while the engine ran, "detached": left running).
STOP_REASONS = ("user", "idle", "budget", "crash", "signal", "batch-done",
                "timeout", "external", "error", "detached")


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    phase: str  # "launching" | "loading weights" | ... | "ready" | ""
    kind: str  # "sglang" | "sim"
    model: str
    base_url: str
    pid: int | None = None
    started_at: float | None = None
    ready_at: float | None = None
    stop_reason: str | None = None
    error: str | None = None
    hint: str | None = None
    log_tail: tuple[str, ...] = ()
    simulated: bool = False
    attached: bool = False
    preset: str = ""
    exit_code: int | None = None
    responsive: bool = True  # after ready: does /ready answer 200?
    # SGLang logged "Health check failed" and set ServerStatus.UnHealthy: /ready is 503 and a
    # SIGTERM skips the drain; it clears once /ready answers 200 again.
    unhealthy: bool = False

    @property
    def running(self) -> bool:
        return self.state in (EngineState.STARTING, EngineState.READY, EngineState.STOPPING)
