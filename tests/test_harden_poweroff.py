"""Issue 16 item 13: the poweroff command is checked before a batch or serve starts (as
doctor checks it), and a fallback to `shutdown -h now` is always said."""

from __future__ import annotations

import json
import os
import stat

import pytest

from qwentui.cli import main
from qwentui.idle.actions import ActionRunner
from tests.conftest import free_port


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    """PATH holds only this directory (no real shutdown may ever run in a test)."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def fake_shutdown(bin_dir, marker) -> None:
    script = bin_dir / "shutdown"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def sim_config(tmp_path, command: list[str]) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                    'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000}\n'
                    f"[idle]\npoweroff_command = {json.dumps(command)}\n")
    return str(path)


def prompts(tmp_path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "prompt": "a", "max_tokens": 4}\n')
    return str(path)


@pytest.mark.parametrize("command,message", [
    (["/no/such/poweroff"], "poweroff command not found: /no/such/poweroff (and no shutdown either)"),
    (["echo", "$QWENTUI_TEST_UNSET"], "idle.poweroff_command uses $QWENTUI_TEST_UNSET, which is not set"),
])
def test_batch_then_poweroff_with_a_command_that_cannot_run_fails_before_any_work(
        tmp_path, capsys, bin_dir, command, message):
    if command[0] == "echo":
        os.symlink("/bin/echo", bin_dir / "echo")
    out = tmp_path / "out.jsonl"
    code = main(["--config", sim_config(tmp_path, command), "batch", prompts(tmp_path), "-o", str(out),
                 "--then", "poweroff"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()  # nothing was started or written


def test_serve_with_idle_poweroff_that_cannot_run_fails_before_the_engine_starts(tmp_path, capsys, bin_dir):
    code = main(["--config", sim_config(tmp_path, ["/no/such/poweroff"]), "serve", "--idle-action", "poweroff"])
    captured = capsys.readouterr()
    assert code == 2 and "starting" not in captured.out
    assert captured.err.strip() == ("qwentui: error: poweroff command not found: /no/such/poweroff "
                                    "(and no shutdown either)")


def test_doctor_fails_a_poweroff_command_that_cannot_run(tmp_path, capsys, bin_dir, monkeypatch):
    monkeypatch.setenv("QWENTUI_IDLE_ACTION", "poweroff")
    main(["--config", sim_config(tmp_path, ["/no/such/poweroff"]), "doctor"])
    idle = [line for line in capsys.readouterr().out.splitlines() if " idle:" in line]
    assert idle == ["✗ idle: idle.action = poweroff, but poweroff command not found: /no/such/poweroff "
                    "(and no shutdown either)"]


def test_a_fallback_is_said_before_the_batch_and_when_it_runs(tmp_path, capsys, bin_dir):
    marker = tmp_path / "marker"
    fake_shutdown(bin_dir, marker)
    code = main(["--config", sim_config(tmp_path, ["/no/such/poweroff"]), "batch", prompts(tmp_path), "-o",
                 str(tmp_path / "out.jsonl"), "--then", "poweroff"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0, err
    assert err[0] == ("qwentui: warning: idle.poweroff_command: /no/such/poweroff not found; "
                      "using shutdown -h now")  # before the engine starts
    assert any("/no/such/poweroff not found; using shutdown -h now; power off requested" in e for e in err)
    assert marker.read_text().strip() == "-h now"


async def test_a_failed_fallback_still_says_it_was_a_fallback(tmp_path, bin_dir):
    script = bin_dir / "shutdown"
    script.write_text("#!/bin/sh\necho 'Failed to talk to init daemon' >&2\nexit 1\n")
    script.chmod(0o700)
    runner = ActionRunner(None, action="poweroff", poweroff_command=["/no/such/poweroff"], print_fn=lambda t: None)
    result = await runner.run("idle")
    assert not result.ok
    assert result.message == ("engine stopped; shutdown -h now failed (exit 1): Failed to talk to init daemon "
                              "(/no/such/poweroff not found; using shutdown -h now)")
