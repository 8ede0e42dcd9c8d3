"""Config loading, validation and the `qwentui config` subcommand."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib

import pytest

from qwentui import config
from qwentui.cli import main
from qwentui.errors import ConfigError


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("45", 45), (12, 12),
    ],
)
def test_durations_parse(text, expected):
    assert config.parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["30 minutes", "abc", "0s", "-5m", "", "1x", 0, -3, True])
def test_bad_durations_rejected(bad):
    with pytest.raises(ConfigError):
        config.parse_duration(bad, key="idle.timeout")


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 90, 1800, 5400, 86400])
def test_format_duration_round_trips(seconds):
    assert config.parse_duration(config.format_duration(seconds)) == seconds


def test_defaults_match_design():
    cfg = config.Config()
    assert cfg.engine.kind == "sglang"
    assert cfg.engine.host == "127.0.0.1"
    assert cfg.engine.port == 30000
    assert cfg.engine.model == "Qwen/Qwen3-1.7B"
    assert cfg.idle.timeout == 1800 and cfg.idle.warn_before == 120
    assert cfg.idle.poweroff_command == ["systemctl", "poweroff"]
    assert cfg.cost.prices == {"T4": 1.8, "L4": 2.5, "A10G": 3.0, "A100": 12.0}
    assert cfg.cache.ttl == 3600


def test_default_file_loads_back_to_defaults():
    data = tomllib.loads(config.default_file_text())
    assert config.from_mapping(data) == config.Config()


def test_file_values_and_env_overrides(tmp_path):
    path = write(tmp_path, '[engine]\nport = 31000\nkind = "sim"\n[idle]\ntimeout = "1h30m"\n')
    cfg = config.load(path, environ={"QWENTUI_ENGINE_PORT": "32000", "QWENTUI_CHAT_THINKING": "false"})
    assert cfg.engine.port == 32000
    assert cfg.engine.kind == "sim"
    assert cfg.idle.timeout == 5400
    assert cfg.chat.thinking is False


def test_env_string_value_kept_verbatim(tmp_path):
    cfg = config.load(None, environ={"QWENTUI_ENGINE_MODEL": "/models/Qwen3-1.7B"})
    assert cfg.engine.model == "/models/Qwen3-1.7B"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[engine]\nport = "abc"\n', "c.toml:2: engine.port must be an integer, got 'abc'"),
        ("[engine]\nport = 0\n", "engine.port must be an integer 1-65535"),
        ("[engine]\nport = 70000\n", "engine.port must be an integer 1-65535"),
        ("[engine]\nprot = 1\n", "engine.prot is not a known key (did you mean 'port'?)"),
        ("[engin]\nport = 1\n", "engin is not a known section (did you mean 'engine'?)"),
        ('[engine]\nkind = "vllm"\n', "engine.kind must be one of sglang, sim"),
        ('[engine]\nhost = "my box"\n', "engine.host must be an IP address"),
        ('[idle]\ntimeout = "30 minutes"\n', "idle.timeout must be a duration"),
        ('[idle]\ntimeout = "0s"\n', "idle.timeout must be greater than zero"),
        ('[idle]\ntimeout = "-5m"\n', "idle.timeout must be a duration"),
        ('[idle]\ntimeout = "5m"\nwarn_before = "5m"\n', "must be shorter than idle.timeout"),
        ('[idle]\npoweroff_command = "systemctl poweroff"\n', "idle.poweroff_command must be a list"),
        ("[cost.prices]\nT4 = 0\n", "cost.prices.T4 must be a price greater than zero"),
        ("[cost]\nprice_per_hour = -1\n", "cost.price_per_hour must not be negative"),
        ("[engine\n", "c.toml:1:8: TOML syntax error"),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path, capsys, text, needle):
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, "--config", str(path), "config", "show")
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_missing_config_file_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "nope.toml"), "config", "show")
    assert code == 2 and "config file not found" in err


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QWENTUI_ENGINE_PROT": "1"}, "QWENTUI_ENGINE_PROT is not a known setting (did you mean 'port'?)"),
        ({"QWENTUI_NOPE_X": "1"}, "QWENTUI_NOPE_X is not a known setting"),
        ({"QWENTUI_ENGINE_PORT": "abc"}, "QWENTUI_ENGINE_PORT must be an integer"),
    ],
)
def test_bad_env_override(monkeypatch, capsys, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, _, err = run_cli(capsys, "config", "show")
    assert code == 2 and needle in err


def test_config_init_writes_0600_and_refuses_overwrite(capsys):
    from qwentui import paths

    code, out, _ = run_cli(capsys, "config", "init")
    target = paths.config_file()
    assert code == 0 and str(target) in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.write_text("# mine\n")
    code, _, err = run_cli(capsys, "config", "init")
    assert code == 2 and "already exists" in err
    assert target.read_text() == "# mine\n"
    code, _, _ = run_cli(capsys, "config", "init", "--force")
    assert code == 0 and "[engine]" in target.read_text()


def test_config_init_unwritable_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "config", "init", "--path", str(blocker / "c.toml"))
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_config_init_unwritable_dir(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions")
        code, _, err = run_cli(capsys, "config", "init", "--path", str(locked / "c.toml"))
        assert code == 2 and "cannot write" in err
    finally:
        locked.chmod(0o700)


def test_config_show_masks_secrets(tmp_path, capsys):
    path = write(tmp_path, '[engine]\napi_key = "sk-supersecretvalue123"\n'
                           '[cache]\nredis_url = "redis://user:pw123@127.0.0.1:6379/0"\n')
    code, out, _ = run_cli(capsys, "--config", str(path), "config", "show")
    assert code == 0
    assert "supersecret" not in out and "pw123" not in out
    assert 'api_key = "sk-s…(22 chars)"' in out


def test_config_show_reflects_cli_flags(capsys):
    code, out, _ = run_cli(capsys, "--demo", "--port", "31234", "config", "show")
    assert code == 0 and 'kind = "sim"' in out and "port = 31234" in out


def test_bad_port_flag(capsys):
    code, _, err = run_cli(capsys, "--port", "0", "config", "show")
    assert code == 2 and "--port must be an integer 1-65535" in err


def test_config_path_lists_dirs(capsys):
    code, out, _ = run_cli(capsys, "config", "path")
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["config", "state", "logs"]


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["config", "frobnicate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err


def test_version_and_help_from_another_dir(tmp_path):
    env = dict(os.environ)
    for args in (["--version"], ["--help"]):
        proc = subprocess.run([sys.executable, "-m", "qwentui", *args], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 0, proc.stderr
    assert "qwentui 0." in subprocess.run([sys.executable, "-m", "qwentui", "--version"], cwd=tmp_path,
                                          capture_output=True, text=True, timeout=30).stdout


def test_help_does_not_import_heavy_libraries(tmp_path):
    code = ("import sys; from qwentui.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('textual', 'httpx', 'pynvml', 'prometheus_client', 'starlette') "
            "if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
