"""Engine supervisor: launch SGLang (or the simulator) with a GPU-fitted preset, own its life.

    sup = Supervisor(cfg, on_status=print)
    await sup.start()          # returns when ready; EngineFailed on crash / timeout
    ...                        # sup.base_url, sup.api_key, sup.served_model, sup.pids()
    await sup.stop("user")     # SIGTERM → stop_grace → SIGKILL, verified gone, port free
"""

from qwentui.engine.argv import LaunchPlan, build_argv, mask_argv, plan
from qwentui.engine.status import STOP_REASONS, EngineState, EngineStatus
from qwentui.engine.supervisor import EngineFailed, Supervisor

__all__ = ["EngineFailed", "EngineState", "EngineStatus", "LaunchPlan", "STOP_REASONS", "Supervisor",
           "build_argv", "mask_argv", "plan"]
