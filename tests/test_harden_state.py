"""Issue 16 item 6: a read-only state dir, or a directory where the ledger should be: the
engine still runs and the session is "not recorded"; the API key write is a one-line refusal."""

from __future__ import annotations

import json
import signal

import pytest

from qwentui.cli import main
from tests import cliproc
from tests.conftest import free_port
from tests.tmpfs import remount_read_only, small_tmpfs


def sim_config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                    'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000}\n' + extra)
    return str(path)


@pytest.fixture
def read_only_state(tmp_path, monkeypatch):
    with small_tmpfs(tmp_path / "ro-state", size="64k") as disk:
        (disk / "qwentui").mkdir()
        remount_read_only(disk)
        monkeypatch.setenv("XDG_STATE_HOME", str(disk))
        yield disk


@pytest.fixture
def ledger_is_a_directory(tmp_path, monkeypatch):
    state = tmp_path / "dir-state"
    for name in ("ledger.sqlite3", "ledger-sim.sqlite3"):
        (state / "qwentui" / name).mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


def batch_still_runs(tmp_path, capsys) -> str:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "a", "max_tokens": 4}\n')
    code = main(["--config", sim_config(tmp_path), "batch", str(src), "-o", str(tmp_path / "out.jsonl")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "content" in json.loads((tmp_path / "out.jsonl").read_text())
    assert "internal error" not in err and "Traceback" not in err
    return err


def test_batch_with_a_read_only_state_dir_runs_unrecorded(tmp_path, capsys, read_only_state):
    err = batch_still_runs(tmp_path, capsys)
    assert "not recorded" in err and "Read-only file system" in err


def test_batch_with_a_directory_as_ledger_runs_unrecorded(tmp_path, capsys, ledger_is_a_directory):
    err = batch_still_runs(tmp_path, capsys)
    assert "not recorded" in err and "Is a directory" in err


def serve_still_runs(tmp_path) -> str:
    proc = cliproc.start(tmp_path, "--config", sim_config(tmp_path), "serve")
    try:
        proc.wait_for("Ctrl+C to")
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.stdout() + proc.stderr()
    finally:
        proc.kill()
    text = proc.stdout() + proc.stderr()
    assert "internal error" not in text and "Traceback" not in text
    assert "engine ready" in text and "engine stopped in" in text
    return text


def test_serve_with_a_read_only_state_dir_runs_unrecorded(tmp_path, read_only_state):
    text = serve_still_runs(tmp_path)
    assert "this session is not recorded" in text and "Read-only file system" in text


def test_serve_with_a_directory_as_ledger_runs_unrecorded(tmp_path, ledger_is_a_directory):
    text = serve_still_runs(tmp_path)
    assert "this session is not recorded" in text and "Is a directory" in text


def test_api_key_that_cannot_be_stored_is_a_one_line_refusal(tmp_path, capsys, read_only_state):
    from qwentui import config
    from qwentui.engine import apikey
    from qwentui.errors import QwentuiError

    engine = config.from_mapping({"engine": {"host": "0.0.0.0"}}).engine
    with pytest.raises(QwentuiError) as err:
        apikey.resolve(engine)
    assert "\n" not in err.value.message and err.value.message.startswith("cannot store the generated API key")
    assert "engine.api_key" in err.value.message


def test_api_key_path_that_is_a_directory_is_a_one_line_refusal(tmp_path, monkeypatch):
    from qwentui import config
    from qwentui.engine import apikey
    from qwentui.errors import QwentuiError

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    apikey.key_path().mkdir(parents=True)
    engine = config.from_mapping({"engine": {"host": "0.0.0.0"}}).engine
    with pytest.raises(QwentuiError, match="cannot read the stored API key"):
        apikey.resolve(engine)


def test_exposed_serve_with_a_read_only_state_dir_refuses_in_one_line(tmp_path, read_only_state):
    proc = cliproc.start(tmp_path, "--config", sim_config(tmp_path), "serve",
                         env={"QWENTUI_ENGINE_HOST": "0.0.0.0"})
    try:
        code = proc.finish()
    finally:
        proc.kill()
    err = proc.stderr().strip().splitlines()
    assert code != 0 and len(err) == 1, proc.stderr()
    assert err[0].startswith("qwentui: error: cannot store the generated API key")
