"""Issue 16 item 18: headless runs record cost: serve with the simulator is priced as the
console prices it (T4 (SIMULATED)); batch writes its row when the engine starts and
heartbeats early, so a kill -9 in the first 30 s is not recorded as 0 minutes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal

import pytest

from qwentui import config
from qwentui.cost.ledger import Ledger, path_for
from tests import cliproc
from tests.conftest import free_port


@pytest.fixture
def no_gpu(monkeypatch):
    """Deterministic on a GPU box too: NVML sees no GPU."""
    from types import SimpleNamespace

    import qwentui.telemetry.nvml as nvml

    monkeypatch.setattr(nvml, "probe", lambda nvml=None: SimpleNamespace(gpus=[]))


def sim_cfg(**cost):
    return config.from_mapping({"engine": {"kind": "sim", "port": free_port(), "stop_grace": "3s",
                                           "overrides": {"--sim-cold-start": "0.2s"}}, "cost": cost})


async def serve_briefly(cfg) -> int:
    """`qwentui serve` in process (hooks installed as the command does): ready, a few ticks, stop."""
    from qwentui.runtime.headless import install
    from qwentui.runtime.serve import ServeSession

    session = ServeSession(cfg, out=open(os.devnull, "w"), tick=0.2)
    install(session)
    running = asyncio.ensure_future(session.run())
    for _ in range(200):
        if session.sup.status.state.value == "ready":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)  # a few ticks while ready
    session.request_stop("user")
    return await running


async def test_serve_with_the_simulator_records_the_console_s_simulated_price(no_gpu):
    from qwentui.cost.prices import table_price

    cfg = sim_cfg()
    assert await serve_briefly(cfg) == 0
    [row] = Ledger(path_for("sim"), read_only=True).sessions()
    assert row.gpu_model == "T4 (SIMULATED)" and row.gpu_class == "T4"
    assert row.price_per_hour == table_price(cfg, "T4") and row.cost is not None and row.cost > 0


async def test_serve_with_a_configured_price_keeps_it(no_gpu):
    assert await serve_briefly(sim_cfg(price_per_hour=2.5)) == 0
    [row] = Ledger(path_for("sim"), read_only=True).sessions()
    assert row.price_per_hour == Decimal("2.5") and "SIMULATED" not in row.gpu_model


def test_batch_with_the_simulator_records_the_simulated_price(tmp_path, capsys, no_gpu):
    from qwentui.cli import main

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                   'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000}\n')
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "a", "max_tokens": 4}\n')
    assert main(["--config", str(cfg), "batch", str(src), "-o", str(tmp_path / "out.jsonl")]) == 0
    assert "cost: unknown" not in capsys.readouterr().out
    [row] = Ledger(path_for("sim"), read_only=True).sessions()
    assert row.gpu_model == "T4 (SIMULATED)" and row.price_per_hour is not None
    assert row.stop_reason == "batch-done"


def test_batch_killed_early_is_recorded_with_the_minutes_it_ran(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                   'overrides = {"--sim-cold-start" = "2s", "--sim-tokens-per-s" = 20}\n'
                   '[cost]\nprice_per_hour = 1.0\n')  # heartbeat stays the default 30 s
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": {i}, "prompt": "q", "max_tokens": 64}}\n' for i in range(20)))
    ledger_path = tmp_path / "xdg" / "state" / "qwentui" / "ledger-sim.sqlite3"
    proc = cliproc.start(tmp_path, "--config", str(cfg), "batch", str(src), "-o", str(tmp_path / "out.jsonl"))
    try:
        proc.wait_for("starting the engine", stream="stderr")
        deadline = time.monotonic() + 10
        while not ledger_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert "engine ready" not in proc.stderr()
        with Ledger(ledger_path, read_only=True) as ledger:  # the row exists during start-up
            assert [r.open for r in ledger.sessions()] == [True]
        time.sleep(6)
        os.killpg(proc.proc.pid, signal.SIGKILL)  # the batch and (PDEATHSIG) its engine
        proc.proc.wait()
    finally:
        proc.kill()
    with Ledger(ledger_path) as ledger:
        [row] = ledger.recover(boot_time=0)
    assert row.stop_reason == "recovered"
    assert row.minutes * 60 >= 4.5  # early heartbeats: ~1 s lost of ~6.5 s, not all of it
