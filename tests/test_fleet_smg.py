"""Three simulators behind a real `smg` (SGLang's model gateway), started by `qwentui fleet`.

Skipped only when smg is not installed (`pip install 'qwentui[fleet]'`). Every process is
started with its output on pipes/files (never pytest's) and stopped in a fixture finalizer.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, redirect_stdout
from pathlib import Path

import httpx
import psutil
import pytest

from qwentui.engine import gateway
from tests.conftest import free_port
from tests.simproc import running_sim, terminate

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(gateway.find_smg() is None, reason="smg not installed: pip install 'qwentui[fleet]'")]

# Each worker runs 4 requests at once; an answer is 16 tokens at 80 tok/s (~0.2 s), so a
# worker tops out near 18 answers/s and the run is bound by the simulated GPU, not by CPU.
SIM_ARGS = ("--max-running-requests", "4", "--sim-ttft", "20ms", "--log-level", "warning")
SIM_SPEED = 80
MAX_TOKENS = 16


@pytest.fixture
def workers():
    with ExitStack() as stack:
        sims = [stack.enter_context(running_sim(*SIM_ARGS, tokens_per_s=SIM_SPEED)) for _ in range(3)]
        yield sims


class Fleet:
    def __init__(self, proc: subprocess.Popen, url: str, metrics_url: str, out: Path, err: Path) -> None:
        self.proc, self.url, self.metrics_url, self.out, self.err = proc, url, metrics_url, out, err

    def smg_pids(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self, timeout: float = 20.0) -> int:
        return terminate(self.proc, timeout)


def start_fleet(tmp_path: Path, urls: list[str], *extra: str) -> Fleet:
    port, metrics = free_port(), free_port()
    out, err = tmp_path / "fleet.out", tmp_path / "fleet.err"
    argv = [sys.executable, "-m", "qwentui", "fleet", "--port", str(port), "--metrics-port", str(metrics), *extra]
    for url in urls:
        argv += ["--worker", url]
    # the gateway notices a dead worker in ~2 s; the ledger beats every second; worker 0 has a price
    env = {**os.environ, "QWENTUI_FLEET_HEALTH_INTERVAL": "1s", "QWENTUI_COST_HEARTBEAT": "1s",
           "QWENTUI_FLEET_PRICES": f'{{ "{urls[0]}" = 1.8 }}'}
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    return Fleet(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics", out, err)


@pytest.fixture
def fleet(workers, tmp_path):
    started: list[Fleet] = []

    def start(*extra: str) -> Fleet:
        f = start_fleet(tmp_path, [w.base_url for w in workers], *extra)
        started.append(f)
        deadline = time.monotonic() + 30
        while f.url not in f.out.read_text() and time.monotonic() < deadline:
            assert f.proc.poll() is None, f.err.read_text()
            time.sleep(0.05)
        assert f.url in f.out.read_text(), f.err.read_text()
        return f

    yield start
    for f in started:
        pids = f.smg_pids()
        f.stop()
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def write_prompts(path: Path, n: int, tag: str) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"{tag}-{i}", "prompt": f"{i} {tag}: say something about the number {i}"}) + "\n")
    return path


async def run_batch(tmp_path: Path, url: str, n: int, tag: str, *, during=None):
    from qwentui.batch.job import BatchJob, JobOptions
    from qwentui.config import Config

    src, out = write_prompts(tmp_path / f"{tag}.jsonl", n, tag), tmp_path / f"{tag}.out.jsonl"
    opts = JobOptions(input=src, output=out, concurrency=24, thinking=False, max_tokens=MAX_TOKENS,
                      then="keep", attach=url, retries=6, timeout=30)
    job = BatchJob(Config(), opts, out=open(os.devnull, "w"), err=open(os.devnull, "w"), tty=False)
    side = asyncio.create_task(during(out)) if during else None
    start = time.monotonic()
    code = await job.run()
    wall = time.monotonic() - start
    if side:
        await side
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return code, lines, n / wall


async def _kill_after(sim, out: Path, lines: int) -> None:
    while not out.exists() or len(out.read_text().splitlines()) < lines:
        await asyncio.sleep(0.02)
    os.kill(sim.pid, signal.SIGKILL)


async def _fleet_view_shows_down(f: Fleet, urls: list[str], dead: str) -> None:
    from qwentui.telemetry.fleet import FleetSampler

    sampler = FleetSampler(f.url, f.metrics_url, urls)
    try:
        deadline = time.monotonic() + 15
        while True:
            snap = await sampler.sample()
            rows = {r.url: r for r in snap.rows}
            if rows[dead].gateway_up is False or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await sampler.aclose()
    assert rows[dead].gateway_up is False and not rows[dead].up and not rows[dead].reachable
    assert all(rows[u].up and rows[u].gateway_up for u in urls if u != dead)
    assert snap.up_count == 2 and snap.gateway.requests_total >= 450
    assert all(r.cost == "cost unknown" for r in snap.rows)


async def test_three_workers_beat_one_and_survive_a_kill(workers, fleet, tmp_path):
    one = await run_batch(tmp_path, workers[0].base_url, 96, "one")
    f = fleet()
    many = await run_batch(tmp_path, f.url, 300, "fleet")
    assert one[0] == 0 and many[0] == 0
    assert many[2] >= 2.5 * one[2], f"fleet {many[2]:.1f} req/s vs one worker {one[2]:.1f} req/s"

    code, lines, _ = await run_batch(tmp_path, f.url, 150, "kill",
                                     during=lambda out: _kill_after(workers[2], out, 30))
    ids = [line["id"] for line in lines]
    assert workers[2].proc.poll() is not None  # really killed mid-batch
    assert [line for line in lines if "error" in line] == []
    assert len(ids) == len(set(ids)) == 150  # 0 lost, 0 duplicated
    assert code == 0
    await _fleet_view_shows_down(f, [w.base_url for w in workers], workers[2].base_url)

    smg = f.smg_pids()
    assert smg, "smg should run as the fleet command's child"
    assert f.stop() == 0
    assert not [p for p in smg if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f.url + "/health", timeout=1)
    _ledger_has_a_session_per_worker([w.base_url for w in workers])


def _ledger_has_a_session_per_worker(urls: list[str]) -> None:
    from decimal import Decimal

    from qwentui.cost.ledger import Ledger, path_for

    with Ledger(path_for("sim"), read_only=True) as ledger:  # the workers are simulators
        rows = {r.gpu_model: r for r in ledger.sessions()}
    assert set(rows) == {f"worker {u}" for u in urls}
    assert all(r.stop and r.stop_reason == "signal" for r in rows.values())
    assert rows[f"worker {urls[0]}"].price_per_hour == Decimal("1.8")
    assert rows[f"worker {urls[1]}"].price_per_hour is None  # unknown: "cost unknown"
    assert sum(r.requests for r in rows.values()) >= 450 - 30  # the fleet's batches (the killed one lost its tail)
    assert all(r.tokens_out > 0 for r in rows.values())
    _each_worker_replays(urls)


def _each_worker_replays(urls: list[str]) -> None:
    """Each worker's busy intervals are in the ledger, apart from this box's, and replay at its price."""
    from qwentui import cli
    from qwentui.cost.ledger import Ledger, path_for

    with Ledger(path_for("sim"), read_only=True) as ledger:
        assert sorted(ledger.active_workers()) == sorted(urls) and ledger.activity() == []
        busy = {u: ledger.activity(worker=u) for u in urls}
    assert all(busy.values())
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["report", "--what-if", "--worker", urls[0], "--cold-start", "1m", "--format", "json",
                         "--ledger", str(path_for("sim"))]) == 0
    data = json.loads(out.getvalue())
    assert data["intervals"] == len(busy[urls[0]]) and data["price_per_hour"] == 1.8
