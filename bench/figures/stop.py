"""Stop latency: `Supervisor.stop()` → every engine process gone, with and without a
simulator that ignores SIGTERM (then the SIGKILL after `stop_grace` is what ends it)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import psutil

from common import Ctx, Figure, free_port


def _cfg(grace: float, ignore_sigterm: bool):
    from qwentui.config import Config

    cfg = Config()
    overrides = {"--sim-cold-start": "0.2s", "--sim-tokens-per-s": 2000}
    if ignore_sigterm:
        overrides["--sim-ignore-sigterm"] = True
    return dataclasses.replace(cfg, engine=dataclasses.replace(
        cfg.engine, kind="sim", port=free_port(), stop_grace=grace, startup_timeout=60.0, overrides=overrides))


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out


async def stop_once(grace: float, ignore_sigterm: bool) -> tuple[float, float, int]:
    """(seconds until stop() returned, seconds until no engine pid is alive, pids)."""
    from qwentui.engine import Supervisor

    sup = Supervisor(_cfg(grace, ignore_sigterm))
    await sup.start()
    pids = sup.pids()
    t0 = time.perf_counter()
    await sup.stop("user")
    returned = time.perf_counter() - t0
    while _alive(pids) and time.perf_counter() - t0 < grace + 10:
        await asyncio.sleep(0.005)
    gone = time.perf_counter() - t0
    for pid in _alive(pids):  # never leave one behind, whatever the result
        psutil.Process(pid).kill()
    return returned, gone, len(pids)


def run(ctx: Ctx) -> list[Figure]:
    grace = ctx.pick(1.0, 2.0)
    rounds = ctx.pick(1, 3)
    out = []
    for ignore, name in ((False, "stop.sigterm"), (True, "stop.sigterm_ignored")):
        runs = [asyncio.run(stop_once(grace, ignore)) for _ in range(rounds)]
        returned, gone, n = max(runs, key=lambda r: r[1])
        how = "engine ignores SIGTERM, SIGKILL after grace" if ignore else "engine exits on SIGTERM"
        out.append(Figure(name, gone, "s", grace + 1.0, "<=",
                          f"{how}; worst of {rounds}, {n} pids, stop() returned after {returned:.2f}s, "
                          f"grace {grace:g}s"))
    return out
