"""Issue 16 item 15: bad input is one line on stderr and exit 2, never an internal error."""

from __future__ import annotations

import pytest

from qwentui.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, err


def assert_one_line(code: int, err: str, text: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "internal error" not in err and text in lines[0]


@pytest.mark.parametrize("argv,text", [
    (["report", "--month", "0000-01"], "--month must be in the years"),
    (["report", "--month", "9999-12"], "--month must be in the years"),
    (["report", "--from", "0001-01-01", "--to", "9999-12-31"], "--from must be in the years"),
    (["report", "--from", "2020-01-01", "--to", "9999-12-31"], "--to must be in the years"),
    (["--attach", "http://[::1", "serve"], "--attach needs an http(s) URL"),
    (["--attach", "http://127.0.0.1:99999", "serve"], "--attach URL has a bad port"),
    (["--attach", "http://[::1", "batch", "in.jsonl", "-o", "out.jsonl"], "--attach needs an http(s) URL"),
    (["--demo", "serve", "--idle-timeout", ""], "--idle-timeout must be a duration"),
    (["--demo", "serve", "--stop-grace", ""], "--stop-grace must be a duration"),
    (["--demo", "serve", "--startup-timeout", ""], "--startup-timeout must be a duration"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"prompt": "a"}\n')
    assert_one_line(*run(capsys, *argv), text)


def test_report_over_the_whole_supported_range_works(tmp_path, capsys):
    code = main(["report", "--from", "1970-01-02", "--to", "9998-12-31"])
    out, err = capsys.readouterr()
    assert code == 0 and "no sessions" in out, err


def test_nul_in_a_config_string_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[engine]\nmodel = "\\u0000"\n')
    for argv in (["--demo", "serve"], ["config", "show"], ["--demo", "batch", "x.jsonl", "-o", "y.jsonl"]):
        assert_one_line(*run(capsys, "--config", str(cfg), *argv), "engine.model must not contain a NUL")


@pytest.mark.parametrize("argv,text", [
    (["--port", "x", "--model-path", "m"], "argument --port: invalid int value: 'x'"),
    (["--model-path", "m", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required"),
])
def test_sim_flag_errors_are_one_line(capsys, argv, text):
    assert_one_line(*run(capsys, "sim", *argv), text)
    assert "usage:" not in capsys.readouterr().out
