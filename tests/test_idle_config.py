"""Bad idle settings are rejected by the config layer (exit 2, one line)."""

from __future__ import annotations

import pytest

from qwentui import cli, config
from qwentui.errors import ConfigError


@pytest.mark.parametrize("idle, match", [
    ({"timeout": 0}, "idle.timeout must be greater than zero"),
    ({"timeout": -5}, "idle.timeout must be greater than zero"),
    ({"timeout": "-5m"}, "idle.timeout must be a duration"),
    ({"timeout": "abc"}, "idle.timeout must be a duration"),
    ({"timeout": "0s"}, "idle.timeout must be greater than zero"),
    ({"timeout": "2m", "warn_before": "2m"}, "idle.warn_before (2m) must be shorter than idle.timeout (2m)"),
    ({"timeout": "1m", "warn_before": "5m"}, "idle.warn_before (5m) must be shorter than idle.timeout (1m)"),
    ({"action": "reboot"}, "idle.action must be one of stop-engine, poweroff"),
    ({"poweroff_command": []}, "idle.poweroff_command must be a non-empty list of strings"),
    ({"poweroff_command": "systemctl poweroff"}, "idle.poweroff_command must be a list"),
])
def test_from_mapping_rejects(idle, match):
    with pytest.raises(ConfigError) as err:
        config.from_mapping({"idle": idle})
    assert match in err.value.message


def test_from_mapping_accepts_good_values():
    cfg = config.from_mapping({"idle": {"timeout": "3s", "warn_before": "1s", "action": "poweroff",
                                        "poweroff_command": ["runpodctl", "stop", "pod", "$RUNPOD_POD_ID"]}})
    assert (cfg.idle.timeout, cfg.idle.warn_before, cfg.idle.action) == (3.0, 1.0, "poweroff")


@pytest.mark.parametrize("body, match", [
    ('timeout = 0', "idle.timeout must be greater than zero"),
    ('timeout = "-1m"', "idle.timeout must be a duration"),
    ('timeout = "abc"', "idle.timeout must be a duration"),
    ('timeout = "1m"\nwarn_before = "1m"', "must be shorter than idle.timeout"),
])
def test_cli_config_show_exits_2_with_one_line(tmp_path, capsys, body, match):
    file = tmp_path / "config.toml"
    file.write_text(f"[idle]\n{body}\n")
    assert cli.main(["--config", str(file), "config", "show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qwentui: error: ") and match in err
    assert str(file) in err and "Traceback" not in err


def test_env_override_bad_timeout_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", "abc")
    assert cli.main(["config", "show"]) == 2
    assert "QWENTUI_IDLE_TIMEOUT" in capsys.readouterr().err


# ----- one path for overrides: file, environment and flags share coercion, validation and the rule


def _serve_args(*argv: str):
    from qwentui.cli import build_parser

    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("where, expect", [
    ("file", "config.toml:2: idle.timeout must be greater than zero"),
    ("env", "environment: QWENTUI_IDLE_TIMEOUT must be greater than zero"),
    ("flag", "--idle-timeout must be greater than zero"),
])
def test_one_bad_value_names_its_origin(tmp_path, monkeypatch, where, expect):
    from qwentui.commands.flags import load_config

    file = tmp_path / "config.toml"
    file.write_text('[idle]\ntimeout = "0s"\n' if where == "file" else "")
    if where == "env":
        monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", "0s")
    flags = ["--idle-timeout", "0s"] if where == "flag" else []
    with pytest.raises(config.ConfigError) as err:
        load_config(_serve_args("--config", str(file), "serve", *flags))
    assert expect in str(err.value) and "got '0s'" in str(err.value)


@pytest.mark.parametrize("timeout, warn", [("20s", 20 / 3), ("3m", 60.0), ("6m", 120.0), ("30m", 120.0)])
def test_warn_before_not_set_is_min_of_2m_and_a_third(timeout, warn, monkeypatch):
    monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", timeout)  # 20s used to fail: "2m must be shorter than 20s"
    assert config.load().idle.warn_before == pytest.approx(warn)
    from qwentui.commands.flags import load_config

    monkeypatch.delenv("QWENTUI_IDLE_TIMEOUT")
    assert load_config(_serve_args("serve", "--idle-timeout", timeout)).idle.warn_before == pytest.approx(warn)


def test_explicit_warn_before_too_long_names_the_explicit_value(tmp_path, monkeypatch):
    file = tmp_path / "config.toml"
    file.write_text('[idle]\nwarn_before = "1m"\n')
    monkeypatch.setenv("QWENTUI_IDLE_TIMEOUT", "20s")
    with pytest.raises(config.ConfigError) as err:
        config.load(file)
    assert str(err.value) == (f"{file}:2: idle.warn_before (1m) must be shorter than idle.timeout "
                              "(20s, from environment: QWENTUI_IDLE_TIMEOUT)")


def test_flags_win_over_environment_over_file(tmp_path, monkeypatch):
    from qwentui.commands.flags import load_config

    file = tmp_path / "config.toml"
    file.write_text("[engine]\nport = 31000\nstop_grace = \"5s\"\n")
    monkeypatch.setenv("QWENTUI_ENGINE_PORT", "32000")
    cfg = load_config(_serve_args("--config", str(file), "serve", "--stop-grace", "7s"))
    assert (cfg.engine.port, cfg.engine.stop_grace) == (32000, 7.0)
    cfg = load_config(_serve_args("--config", str(file), "--port", "33000", "serve"))
    assert cfg.engine.port == 33000
