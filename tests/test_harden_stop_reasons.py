"""Issue 16 item 14: a signal during start-up (also during an F5 restart) is recorded as
"signal" and a start-up timeout as "timeout", never as "user"."""

from __future__ import annotations

import asyncio
import signal

from qwentui import config
from qwentui.cli import main
from qwentui.cost.ledger import Ledger, path_for
from tests import cliproc
from tests.conftest import free_port


def sim_config(tmp_path, cold: str = "4s", extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n{extra}'
                    f'overrides = {{"--sim-cold-start" = "{cold}", "--sim-tokens-per-s" = 2000}}\n'
                    '[cost]\nprice_per_hour = 1.0\n')
    return str(path)


def rows(tmp_path) -> list:
    with Ledger(tmp_path / "xdg" / "state" / "qwentui" / "ledger-sim.sqlite3", read_only=True) as ledger:
        return ledger.sessions()


def test_serve_start_up_timeout_is_recorded_as_timeout(tmp_path):
    proc = cliproc.start(tmp_path, "--config", sim_config(tmp_path), "serve", "--startup-timeout", "1s")
    try:
        assert proc.finish() == 1, proc.stdout() + proc.stderr()
    finally:
        proc.kill()
    assert "not ready after 1s" in proc.stdout()
    [row] = rows(tmp_path)
    assert row.stop_reason == "timeout" and not row.open


def serve_signalled_during_start_up(tmp_path, sig: int) -> None:
    proc = cliproc.start(tmp_path, "--config", sim_config(tmp_path), "serve")
    try:
        proc.wait_for("launching")
        proc.signal(sig)
        proc.finish()
    finally:
        proc.kill()
    assert "stop requested (signal) during start-up" in proc.stdout()
    [row] = rows(tmp_path)
    assert row.stop_reason == "signal" and not row.open


def test_serve_sigterm_during_start_up_is_recorded_as_signal(tmp_path):
    serve_signalled_during_start_up(tmp_path, signal.SIGTERM)


def test_serve_sighup_during_start_up_is_recorded_as_signal(tmp_path):
    serve_signalled_during_start_up(tmp_path, signal.SIGHUP)


def test_batch_sigterm_during_start_up_is_recorded_as_signal(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "a", "max_tokens": 4}\n')
    proc = cliproc.start(tmp_path, "--config", sim_config(tmp_path), "batch", str(src), "-o",
                         str(tmp_path / "out.jsonl"))
    try:
        proc.wait_for("starting the engine", stream="stderr")
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 130, proc.stderr()
    finally:
        proc.kill()
    [row] = rows(tmp_path)
    assert row.stop_reason == "signal" and not row.open


def test_batch_start_up_timeout_is_recorded_as_timeout(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "a", "max_tokens": 4}\n')
    code = main(["--config", sim_config(tmp_path, extra='startup_timeout = "1s"\n'), "batch", str(src), "-o",
                 str(tmp_path / "out.jsonl")])
    assert code == 1 and "not ready after 1s" in capsys.readouterr().err
    [row] = rows(tmp_path)
    assert row.stop_reason == "timeout" and not row.open


async def no_metrics():
    return None


def runtime_for(tmp_path, cold: str):
    from qwentui.engine import Supervisor
    from qwentui.runtime.core import Runtime

    cfg = config.from_mapping({"engine": {"kind": "sim", "port": free_port(), "stop_grace": "3s",
                                          "overrides": {"--sim-cold-start": cold}}})
    sup = Supervisor(cfg)
    return Runtime(cfg, sup, scrape=no_metrics, ledger=Ledger(path_for("sim"))), sup


async def cancel_like_teardown(task: asyncio.Task) -> None:
    """What Textual does to a running worker when the app exits."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def wait_state(sup, state: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if sup.status.state.value == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"engine never {state}: {sup.status}")


async def test_console_signal_during_start_up_is_recorded_as_signal(tmp_path):
    runtime, sup = runtime_for(tmp_path, "4s")
    starting = asyncio.ensure_future(runtime.start_engine())
    await wait_state(sup, "starting")
    runtime.stop_requested("signal")  # commands.console's signal handler
    await cancel_like_teardown(starting)  # the start-up is stopped as "user" by the supervisor
    await runtime.close("signal")
    [row] = Ledger(path_for("sim"), read_only=True).sessions()
    assert row.stop_reason == "signal"


async def test_console_signal_during_an_f5_restart_is_recorded_as_signal(tmp_path):
    runtime, sup = runtime_for(tmp_path, "0.2s")
    await runtime.start_engine()
    first_pid = sup.status.pid
    restarting = asyncio.ensure_future(runtime.restart_engine())
    for _ in range(400):  # the new engine is starting
        if sup.status.state.value == "starting" and sup.status.pid not in (None, first_pid):
            break
        await asyncio.sleep(0.02)
    assert sup.status.state.value == "starting"
    runtime.stop_requested("signal")
    await cancel_like_teardown(restarting)
    await runtime.close("signal")
    first, second = Ledger(path_for("sim"), read_only=True).sessions()
    assert first.stop_reason == "user"  # the restart's own stop
    assert second.stop_reason == "signal"
