"""Presets, the flag table and the argv builder (no processes started)."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest

from qwentui import cli
from qwentui.config import Config, from_mapping
from qwentui.engine import apikey, argv as argv_mod, build_argv, presets
from qwentui.telemetry import nvml as gpu
from qwentui.errors import QwentuiError, UsageError

# Transcribed independently from contracts/sglang.md §1 (SGLang 0.5.23): flag → (type, choices).
CONTRACT = {
    "--model-path": ("str", None), "--served-model-name": ("str", None), "--host": ("str", None),
    "--port": ("int", None),
    "--api-key": ("str", None), "--admin-api-key": ("str", None),
    "--mem-fraction-static": ("float", None), "--context-length": ("hrint", None),
    "--dtype": ("str", "auto half float16 bfloat16 float float32"),
    "--kv-cache-dtype": ("str", "auto fp8_e5m2 fp8_e4m3 mxfp8 bf16 bfloat16 nvfp4 fp4_mx_block16"),
    "--reasoning-parser": ("str", None), "--enable-metrics": ("flag", None),
    "--max-running-requests": ("int", None), "--chunked-prefill-size": ("int", None),
    "--max-total-tokens": ("hrint", None), "--tp-size": ("int", None),
    "--log-level": ("str", None), "--log-level-http": ("str", None),
    "--skip-server-warmup": ("flag", None), "--disable-decode-cuda-graph": ("flag", None),
    "--disable-prefill-cuda-graph": ("flag", None),
    "--attention-backend": ("str", "triton torch_native flex_attention dsa nsa qsa dsv4 compressed fa3 fa4 "
                            "flashinfer llada2_cfg_flashinfer flashmla trtllm_mla cutedsl_mla tokenspeed_mla "
                            "trtllm_mha hpc_ops minicpm_flashattn minicpm_flashinfer aiter wave intel_amx "
                            "ascend intel_xpu"),
    "--trust-remote-code": ("flag", None), "--enable-cache-report": ("flag", None),
    "--sampling-defaults": ("str", "openai model"), "--default-chat-template-kwargs": ("json", None),
    "--stream-response-default-include-usage": ("flag", None), "--allow-auto-truncate": ("flag", None),
    "--decode-log-interval": ("int", None), "--random-seed": ("int", None),
    "--enable-memory-saver": ("flag", None), "--sleep-on-idle": ("flag", None),
    "--watchdog-timeout": ("float", None), "--uvicorn-access-log-exclude-prefixes": ("list", None),
}
REAL_PRESETS = ["t4", "l4", "a10g", "a100", "h100", "generic-cuda"]


def engine_cfg(**changes) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, **changes))


def split_flags(words: list[str]) -> dict[str, list[str]]:
    """argv tail → {flag: [values]} (a flag's values are the words up to the next flag)."""
    out: dict[str, list[str]] = {}
    current = None
    for word in words:
        if word.startswith("--"):
            current = word
            out[current] = []
        else:
            assert current is not None, f"value {word!r} without a flag"
            out[current].append(word)
    return out


def assert_valid(flag: str, values: list[str]) -> None:
    assert flag in CONTRACT, f"{flag} is not an SGLang 0.5.23 flag from the contract"
    kind, choices = CONTRACT[flag]
    if kind == "flag":
        assert values == [], f"{flag} is a switch, got {values}"
        return
    if kind == "list":
        assert values, flag
        return
    assert len(values) == 1, f"{flag} takes one value, got {values}"
    value = values[0]
    if choices:
        assert value in choices.split(), f"{flag} {value!r} not in {choices}"
    if kind == "int":
        int(value)
    if kind == "hrint":
        assert re.fullmatch(r"\d+(k|Ki|m|Mi)?", value), value
    if kind == "float":
        float(value)
    if kind == "json":
        json.loads(value)


def test_all_presets_ship():
    assert set(presets.names()) >= set(REAL_PRESETS) | {"sim"}


@pytest.mark.parametrize("name", REAL_PRESETS + ["sim"])
def test_every_preset_flag_is_a_valid_sglang_flag(name):
    argv = build_argv(engine_cfg(kind="sglang"), preset=name)
    assert argv[:4] == [sys.executable, *argv_mod.SGLANG_ENTRY]
    flags = split_flags(argv[4:])
    for flag, values in flags.items():
        assert_valid(flag, values)
    assert flags["--reasoning-parser"] == ["qwen3"]
    assert "--enable-metrics" in flags


@pytest.mark.parametrize("name", REAL_PRESETS + ["sim"])
def test_every_preset_parses_with_the_simulators_argparse(name):
    from qwentui.sim import args as sim_args

    argv = build_argv(engine_cfg(kind="sim"), preset=name)
    parsed = sim_args.parse(argv[3:])
    assert parsed.reasoning_parser == "qwen3" and parsed.enable_metrics


@pytest.mark.parametrize("name", REAL_PRESETS + ["sim"])
def test_every_preset_flag_has_a_why_comment(name):
    text = (presets.presets_dir() / f"{name}.toml").read_text().splitlines()
    for i, line in enumerate(text):
        if line.startswith('"--'):
            assert text[i - 1].startswith("#"), f"{name}.toml: {line} has no comment above it"


def test_t4_is_float16_and_never_fa3():
    flags = split_flags(build_argv(engine_cfg(), gpu_name="Tesla T4")[4:])
    assert flags["--dtype"] == ["float16"]
    assert flags["--attention-backend"] in (["flashinfer"], ["triton"])
    assert "fa3" not in sum(flags.values(), [])


@pytest.mark.parametrize("name,preset", [
    ("Tesla T4", "t4"), ("NVIDIA L4", "l4"), ("NVIDIA A10G", "a10g"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA GeForce RTX 4090", "generic-cuda"),
])
def test_auto_preset_by_gpu_name(name, preset):
    assert argv_mod.plan(engine_cfg(), gpu_name=name).preset == preset


def test_auto_without_gpu(monkeypatch):
    monkeypatch.setattr(gpu, "detect_gpu_name", lambda nvml=None: None)
    assert argv_mod.plan(engine_cfg()).preset == "generic-cuda"
    assert argv_mod.plan(engine_cfg(kind="sim")).preset == "sim"


def test_auto_detects_gpu_through_nvml(monkeypatch):
    monkeypatch.setattr(gpu, "detect_gpu_name", lambda nvml=None: "Tesla T4")
    launch = argv_mod.plan(engine_cfg())
    assert (launch.preset, launch.gpu_class) == ("t4", "T4")


def test_sim_argv_shape():
    argv = build_argv(engine_cfg(kind="sim", port=31234, model="m"))
    assert argv[:9] == [sys.executable, "-m", "qwentui.sim", "--model-path", "m", "--host", "127.0.0.1",
                        "--port", "31234"]
    assert "--sim-cold-start" in argv


def test_sim_with_a_gpu_preset_adds_the_sim_switches():
    argv = build_argv(engine_cfg(kind="sim"), preset="t4")
    assert argv[2] == "qwentui.sim" and "--sim-cold-start" in argv and argv[argv.index("--dtype") + 1] == "float16"


def test_sglang_argv_uses_engine_python(tmp_path):
    argv = build_argv(engine_cfg(python="/opt/sglang/bin/python"), preset="l4")
    assert argv[:4] == ["/opt/sglang/bin/python", *argv_mod.SGLANG_ENTRY]


def test_overrides_replace_add_and_remove():
    cfg = engine_cfg(overrides={"--context-length": 8192, "--sleep-on-idle": False, "--random-seed": 7})
    flags = split_flags(build_argv(cfg, preset="t4")[4:])
    assert flags["--context-length"] == ["8192"] and flags["--random-seed"] == ["7"]
    assert "--sleep-on-idle" not in flags


def test_sim_overrides_only_for_sim():
    cfg = engine_cfg(kind="sim", overrides={"--sim-cold-start": "0.2s"})
    argv = build_argv(cfg)
    assert argv[argv.index("--sim-cold-start") + 1] == "0.2s"
    with pytest.raises(UsageError, match="--sim-cold-start only works with the simulator"):
        build_argv(engine_cfg(overrides={"--sim-cold-start": "1s"}), preset="t4")


def test_extra_args_are_appended():
    argv = build_argv(engine_cfg(extra_args=["--log-level", "debug"]), preset="t4")
    assert argv[-2:] == ["--log-level", "debug"]


@pytest.mark.parametrize("arg,flag", [("--port", "--port"), ("--port=1", "--port"), ("--host", "--host"),
                                      ("--model-path", "--model-path"), ("--model", "--model"),
                                      ("--api-key", "--api-key"), ("--served-model-name", "--served-model-name"),
                                      ("--po", "--port")])
def test_extra_args_conflicting_with_managed_flags(arg, flag):
    with pytest.raises(UsageError, match=re.escape(flag)) as err:
        build_argv(engine_cfg(extra_args=[arg, "1"]), preset="t4")
    assert "engine.extra_args" in err.value.message


def test_overrides_conflicting_with_managed_flags():
    with pytest.raises(UsageError, match="--port conflicts with --port, which qwentui sets from engine.port"):
        build_argv(engine_cfg(overrides={"--port": 1}), preset="t4")


@pytest.mark.parametrize("flag,managed", [("--hos", "--host"), ("--host", "--host"), ("--host=x", "--host"),
                                          ("--po", "--port"), ("--api", "--api-key"), ("--model", "--model"),
                                          ("--served", "--served-model-name"), ("--enable-m", "--enable-metrics")])
def test_overrides_that_abbreviate_a_managed_flag_are_refused(flag, managed):
    """argparse takes `--hos` as `--host`: after our `--host 127.0.0.1` it rebinds the engine."""
    with pytest.raises(UsageError, match=f"engine.overrides: {re.escape(flag)} conflicts with {managed}"):
        build_argv(engine_cfg(overrides={flag: "0.0.0.0"}), preset="t4")
    with pytest.raises(UsageError, match=f"engine.extra_args: .* conflicts with {managed}"):
        build_argv(engine_cfg(extra_args=[flag, "0.0.0.0"]), preset="t4")


def test_loopback_only_is_read_from_the_final_argv(monkeypatch):
    assert argv_mod.final_host(["x", "--host", "127.0.0.1", "--host=0.0.0.0"]) == "0.0.0.0"
    assert argv_mod.final_host(["x"]) == "127.0.0.1"
    monkeypatch.setattr(argv_mod.F, "MANAGED", {})  # were a rebinding flag to slip through...
    launch = argv_mod.plan(engine_cfg(extra_args=["--host", "0.0.0.0"]), preset="t4")
    assert launch.host == "0.0.0.0" and launch.api_key  # ...the engine still gets a key


@pytest.mark.parametrize("overrides,msg", [
    ({"--dtype": "bf17"}, "--dtype must be one of"),
    ({"--context-length": "lots"}, "--context-length must be an integer"),
    ({"--mem-fraction-static": "x"}, "must be a number"),
    ({"--sleep-on-idle": "yes"}, "is a switch"),
    ({"context-length": 1}, "keys are SGLang flags"),
])
def test_bad_override_values(overrides, msg):
    with pytest.raises(UsageError, match=msg):
        build_argv(engine_cfg(overrides=overrides), preset="t4")


def test_unknown_preset():
    with pytest.raises(UsageError, match="unknown preset 'nope'; known presets: .*t4"):
        build_argv(engine_cfg(), preset="nope")
    with pytest.raises(UsageError, match="unknown preset"):
        build_argv(engine_cfg(preset="../etc/passwd"))


def test_resolve_gpu_names():
    assert argv_mod.resolve_gpu("t4") == ("T4", "T4")
    assert argv_mod.resolve_gpu("Tesla T4")[1] == "T4"
    with pytest.raises(UsageError, match="unknown GPU 'V100'"):
        argv_mod.resolve_gpu("V100")


def test_base_url_for_wildcard_hosts():
    assert argv_mod.base_url("0.0.0.0", 1) == "http://127.0.0.1:1"
    assert argv_mod.base_url("::", 2) == "http://[::1]:2"
    assert argv_mod.base_url("::1", 3) == "http://[::1]:3"


def test_api_key_generated_for_public_host_and_reused():
    cfg = engine_cfg(host="0.0.0.0")
    first = argv_mod.plan(cfg, preset="t4")
    key = first.api_key
    assert key and key not in " ".join(first.argv) and "--api-key" not in first.argv
    assert first.config_file() == {"api-key": key}
    assert first.shown_argv(reveal=True)[-2:] == ["--api-key", key]
    path = apikey.key_path()
    assert path.stat().st_mode & 0o777 == 0o600
    assert argv_mod.plan(cfg, preset="t4").api_key == key
    assert key not in " ".join(first.masked_argv())


def test_no_api_key_on_loopback():
    assert "--api-key" not in build_argv(engine_cfg(), preset="t4")
    assert not apikey.key_path().exists()


def test_configured_api_key_wins():
    launch = argv_mod.plan(engine_cfg(host="0.0.0.0", api_key="sk-configured-123"), preset="t4")
    assert launch.config_file() == {"api-key": "sk-configured-123"}
    assert "sk-configured-123" not in launch.argv


def test_preset_files_with_bad_flags_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "presets_dir", lambda: tmp_path)
    (tmp_path / "bad.toml").write_text('[flags]\n"--not-a-flag" = 1\n')
    with pytest.raises(QwentuiError, match="not a known SGLang 0.5.23 flag"):
        presets.load("bad")
    (tmp_path / "bad2.toml").write_text('[flags]\n"--port" = 1\n')
    with pytest.raises(QwentuiError, match="managed by qwentui"):
        presets.load("bad2")


def test_config_bad_host_and_port_are_usage_errors():
    from qwentui.errors import ConfigError

    with pytest.raises(ConfigError, match="engine.host"):
        from_mapping({"engine": {"host": "not a host"}})
    with pytest.raises(ConfigError, match="engine.port"):
        from_mapping({"engine": {"port": 70000}})


# ----- `qwentui engine command` -------------------------------------------------------------


def test_engine_command_prints_argv(capsys):
    assert cli.main(["engine", "command", "--gpu", "T4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# preset t4") and "sglang.cli.main" in out[1] and " serve " in out[1] and "--dtype float16" in out[1]


def test_engine_command_json(capsys):
    assert cli.main(["--demo", "engine", "command", "--json"]) == 0
    words = json.loads(capsys.readouterr().out)
    assert words[1:3] == ["-m", "qwentui.sim"]


def test_engine_command_masks_key(capsys, monkeypatch):
    monkeypatch.setenv("QWENTUI_ENGINE_HOST", "0.0.0.0")
    monkeypatch.setenv("QWENTUI_ENGINE_API_KEY", "sk-secret-value-123")
    assert cli.main(["engine", "command", "--preset", "t4", "--json"]) == 0
    out = capsys.readouterr().out
    assert "sk-secret-value-123" not in out and "sk-s…(19 chars)" in out


@pytest.mark.parametrize("argv,msg", [
    (["engine", "command", "--gpu", "V100"], "unknown GPU 'V100'"),
    (["engine", "command", "--preset", "nope"], "unknown preset 'nope'"),
    (["--port", "0", "engine", "command"], "--port must be an integer 1-65535"),
    (["engine", "command", "--port", "70000"], "--port must be an integer 1-65535"),
])
def test_engine_command_bad_input(argv, msg, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qwentui: error:") and msg in err[0]


def test_engine_command_extra_args_conflict(capsys, monkeypatch):
    monkeypatch.setenv("QWENTUI_ENGINE_EXTRA_ARGS", '["--port", "1234"]')
    assert cli.main(["engine", "command"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port conflicts with --port" in err[0]


def test_engine_presets_command(capsys):
    assert cli.main(["engine", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REAL_PRESETS + ["sim"])


@pytest.mark.parametrize("name", REAL_PRESETS)
def test_presets_leave_the_memory_split_to_sglangs_formula(name):
    """0.80 on L4/A10G left 4.5 GiB where SGLang's memory_hook.py keeps 7.1 GiB (issue 15)."""
    preset = presets.load(name)
    assert "--mem-fraction-static" not in preset.flags
    text = (presets.presets_dir() / f"{name}.toml").read_text()
    assert "memory_hook.py" in text


@pytest.mark.parametrize("gib,fraction", [(15.0, 0.735), (22.5, 0.684), (40.0, 0.823), (79.6, 0.83), (80.0, 0.83)])
def test_sglang_auto_mem_fraction_by_card(gib, fraction):
    assert presets.sglang_mem_fraction(gib * 2**30) == fraction
