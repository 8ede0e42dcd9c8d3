"""Ledger: cost lost to kill -9, in heartbeats (target ≤ 1).

A child process runs the real cost path (`Meter` + `Ledger`): opens an engine session
and calls `Meter.heartbeat()` every H seconds, as the console does every `cost.heartbeat`.
It is SIGKILLed at a random moment; then `Ledger.recover()` closes the orphaned session
at its last heartbeat and the recorded cost is compared with price × (kill − start).

Run as a script it is that child: `python ledger.py PATH HEARTBEAT_S`.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

PRICE = Decimal("3.0")  # A10G, CNY/h: the figure is in heartbeats, so any price does


def child(path: str, every: float) -> None:
    import dataclasses

    from qwentui.config import Config
    from qwentui.cost.ledger import Ledger
    from qwentui.cost.meter import Meter

    cfg = Config()
    cfg = dataclasses.replace(cfg, cost=dataclasses.replace(cfg.cost, price_per_hour=float(PRICE)))
    meter = Meter(cfg, ledger=Ledger(path))
    session = meter.engine_started(kind="sim")
    print(session, flush=True)
    due = time.monotonic()
    while True:  # fixed rate, like the console's timer: a slow write does not stretch the interval
        due += every
        time.sleep(max(0.0, due - time.monotonic()))
        meter.heartbeat()


def kill_once(path: Path, every: float, life: float) -> tuple[float, Decimal, Decimal]:
    """(error in heartbeats, recorded cost, true cost) for one child killed after `life` s."""
    from qwentui.cost.ledger import Ledger

    proc = subprocess.Popen([sys.executable, __file__, str(path), str(every)], stdout=subprocess.PIPE,
                            text=True)
    session = int(proc.stdout.readline())
    time.sleep(life)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, so recover() sees the pid gone (a zombie still answers kill 0)
    with Ledger(path) as ledger:
        ledger.recover()
        row = ledger.session(session)
    true_cost = PRICE * Decimal(str(killed_at - row.start)) / 3600
    per_heartbeat = PRICE * Decimal(str(every)) / 3600
    if row.cost is None or row.stop_reason != "recovered":
        raise RuntimeError(f"recover() did not close session {session} with a cost: {row}")
    return float((true_cost - row.cost) / per_heartbeat), row.cost, true_cost


def run(ctx) -> list:
    from common import Figure  # here, not at the top: the child runs without bench/ on sys.path

    every = 0.2
    kills = ctx.pick(3, 10)
    rng = random.Random()
    path = ctx.tmp / "bench-ledger.sqlite3"
    longest = ctx.pick(1.0, 2.0)
    errors = [kill_once(path, every, rng.uniform(0.3, longest))[0] for _ in range(kills)]
    return [Figure("ledger.kill9_loss", max(errors), "beats", 1.0, "<=",
                   f"worst of {kills} kill -9 at random times, heartbeat {every}s; "
                   f"mean {sum(errors) / len(errors):.2f}, min {min(errors):.2f}")]


if __name__ == "__main__":
    child(sys.argv[1], float(sys.argv[2]))
