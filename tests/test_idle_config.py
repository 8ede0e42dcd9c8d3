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
