"""Issue 16 item 10: two batches on the same OUT: the second is refused in one line naming
the holder; a batch never stops an engine it did not start."""

from __future__ import annotations

import json
import os

import pytest

from qwentui.batch.jsonl import OutputWriter
from qwentui.cli import main
from qwentui.errors import QwentuiError
from tests import cliproc
from tests.conftest import free_port
from tests.test_harden_batch_signals import port_is_free, prompts, slow_config, wait_lines


def test_a_second_writer_on_the_same_out_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out.jsonl"
    first = OutputWriter(out)
    try:
        for kwargs in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(QwentuiError, match=rf"is in use by another qwentui batch \(pid {os.getpid()}\)"):
                OutputWriter(out, **kwargs)
        first.write({"id": 1, "content": "kept"})
    finally:
        first.close()
    assert json.loads(out.read_text()) == {"id": 1, "content": "kept"}  # the refused ones truncated nothing
    second = OutputWriter(out, resume=True)  # free again once the first closed
    second.close()
    assert not (tmp_path / ".out.jsonl.lock").exists()


def test_a_lock_left_by_a_killed_batch_does_not_block(tmp_path):
    out = tmp_path / "out.jsonl"
    (tmp_path / ".out.jsonl.lock").write_text("999999\n")  # its holder died (kill -9): no flock held
    OutputWriter(out).close()


def test_two_batches_on_the_same_out_never_interleave(tmp_path, capsys):
    port, out = free_port(), tmp_path / "out.jsonl"
    cfg, src = slow_config(tmp_path, port), prompts(tmp_path, 12)
    first = cliproc.start(tmp_path, "--config", cfg, "batch", src, "-o", str(out), "--concurrency", "2")
    try:
        wait_lines(out, 1)
        for extra in ([], ["--resume"], ["--overwrite"]):
            code = main(["--config", cfg, "batch", src, "-o", str(out), *extra])
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 1 and len(err) == 1, err
            assert f"is in use by another qwentui batch (pid {first.proc.pid})" in err[0]
        assert first.finish(timeout=60) == 0, first.stderr()
    finally:
        first.kill()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(12))  # no duplicates, nothing torn
    assert port_is_free(port)


def test_a_batch_stops_a_guards_engine_only_through_the_guard(tmp_path, capsys):
    port = free_port()
    cfg = slow_config(tmp_path, port)
    serve = cliproc.start(tmp_path, "--config", cfg, "serve", name="serve")
    try:
        serve.wait_for("Ctrl+C to")
        for then in ("keep", "stop"):
            code = main(["--config", cfg, "batch", prompts(tmp_path, 2), "-o", str(tmp_path / f"{then}.jsonl"),
                         "--then", then])
            err = capsys.readouterr().err
            assert code == 0 and "using the guard's engine" in err, err  # `serve` is a guard
            if then == "keep":
                assert not port_is_free(port) and serve.proc.poll() is None  # still serving
        # --then stop: the guard stopped its engine itself; a foreground serve ends with its engine
        assert "the guard's engine stopped (batch-done); the foreground 'qwentui serve' ends with it" in err, err
        assert serve.finish() == 0 and port_is_free(port)
        assert "engine stopped through the control API (batch-done)" in serve.stdout(), serve.stdout()
    finally:
        serve.kill()


def test_a_device_as_out_needs_no_lock(tmp_path):
    writer = OutputWriter("/dev/null", overwrite=True)
    writer.write({"id": 1, "content": "x"})
    writer.close()
    assert not os.path.exists("/dev/.null.lock")
