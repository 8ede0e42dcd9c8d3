"""Issue 16 item 17 (EMFILE part): a concurrency above the open-file limit is refused up
front in one line; running out of descriptors mid-run is said once and lowers the
concurrency instead of failing every request as "engine unreachable"."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

from qwentui.batch.jsonl import OutputWriter, parse_lines
from qwentui.batch.runner import BatchOptions, BatchRunner
from qwentui.chat import client as chat
from tests.conftest import free_port


def emfile_error() -> chat.ConnectError:
    """What Sender raises when the socket cannot be created (httpx.ConnectError from OSError 24)."""
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as exc:
            raise chat.ConnectError("cannot connect to http://127.0.0.1:1: is the engine running?") from exc
    except chat.ConnectError as err:
        return err


async def test_emfile_is_said_once_and_lowers_the_concurrency(tmp_path):
    import asyncio

    in_flight, peak_after, warnings = [0], [], []
    state = {"emfiles": 0}

    async def send(messages, **kw):
        in_flight[0] += 1
        try:
            await asyncio.sleep(0)
            if in_flight[0] > 4:  # only 4 sockets fit under this process's limit
                state["emfiles"] += 1
                raise emfile_error()
            if state["emfiles"]:
                peak_after.append(in_flight[0])
            await asyncio.sleep(0.001)
            return chat.ChatResult("ok", "", None, "stop", 0.001)
        finally:
            in_flight[0] -= 1

    items = parse_lines([json.dumps({"id": i, "prompt": "q"}) for i in range(200)])
    writer = OutputWriter(tmp_path / "out.jsonl")
    runner = BatchRunner(items, writer, send, model="m", options=BatchOptions(concurrency=32, backoff=0.001),
                         warn=warnings.append)
    result = await runner.run()
    writer.close()
    assert result.ok == 200 and result.failed == 0 and result.engine_error is None
    assert len(warnings) == 1 and "too many open files (EMFILE)" in warnings[0]
    assert runner.fd_limited_to is not None and runner.fd_limited_to <= 4
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(200)) and all("content" in r for r in records)


async def test_emfile_on_the_last_worker_is_not_engine_unreachable(tmp_path):
    async def send(messages, **kw):
        raise emfile_error()

    items = parse_lines([json.dumps({"id": i, "prompt": "q"}) for i in range(3)])
    writer = OutputWriter(tmp_path / "out.jsonl")
    runner = BatchRunner(items, writer, send, model="m", options=BatchOptions(concurrency=1, retries=1,
                                                                              backoff=0.001))
    result = await runner.run()
    writer.close()
    assert result.failed == 3 and result.engine_error is None
    errors = [json.loads(line)["error"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(e.startswith("too many open files (EMFILE)") for e in errors)


def test_real_sockets_under_a_low_open_file_limit(tmp_path):
    """A real engine, real connections, and a soft limit only a few sockets above what is open."""
    script = textwrap.dedent(f"""
        import asyncio, json, os, resource, sys
        from pathlib import Path
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parent.parent)!r})
        from tests.simproc import running_sim
        from qwentui.batch.jsonl import OutputWriter, parse_lines
        from qwentui.batch.runner import BatchOptions, BatchRunner, Sender

        async def main(sim):
            items = parse_lines([json.dumps({{"id": i, "prompt": "q", "max_tokens": 4}}) for i in range(60)])
            writer = OutputWriter(Path({str(tmp_path / "out.jsonl")!r}))
            sender = Sender(sim.base_url, model="Qwen/Qwen3-1.7B", timeout=30)
            warnings = []
            runner = BatchRunner(items, writer, sender.send, model="m", warn=warnings.append,
                                 options=BatchOptions(concurrency=40, backoff=0.01))
            open_now = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 8, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            result = await runner.run()
            await sender.aclose()
            writer.close()
            print(json.dumps({{"ok": result.ok, "failed": result.failed, "engine_error": result.engine_error,
                              "warnings": warnings, "limited_to": runner.fd_limited_to}}))

        with running_sim("--sim-tokens-per-s", "2000", "--max-running-requests", "64") as sim:
            asyncio.run(main(sim))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] == 60 and report["failed"] == 0 and report["engine_error"] is None, report
    assert len(report["warnings"]) == 1 and report["limited_to"] is not None


def test_a_concurrency_above_the_hard_limit_is_refused_up_front(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a"}\n')
    argv = [sys.executable, "-m", "qwentui", "--demo", "--port", str(free_port()), "batch", str(src), "-o",
            str(tmp_path / "out.jsonl"), "--concurrency", "1024"]
    done = subprocess.run(["prlimit", "--nofile=256:256", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("qwentui: error: --concurrency 1024 needs about")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.jsonl").exists()


def test_a_low_soft_limit_is_raised_toward_the_hard_one(monkeypatch):
    import resource

    from qwentui.commands.batch import check_open_files

    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 100_000))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(limits))
    check_open_files(1024)
    assert calls and 1024 < calls[0][0] <= 100_000 and calls[0][1] == 100_000
