"""engine.gpus: one SGLang server with --dp-size N on a multi-GPU box (fake NVML, 4 GPUs)."""

from __future__ import annotations

import argparse
import dataclasses
from decimal import Decimal

import pytest

from qwentui import cli, config
from qwentui.commands import doctor
from qwentui.cost.meter import Meter
from qwentui.engine import argv as argv_mod
from qwentui.engine import multigpu
from qwentui.errors import ConfigError, UsageError
from qwentui.telemetry import nvml
from qwentui.telemetry.nvml import NvmlSnapshot
from tests.fake_nvml import FakeDevice, FakeNvml

GiB = 1024**3


def four_a10g() -> FakeNvml:
    return FakeNvml([FakeDevice(uuid=f"GPU-{i}") for i in range(4)])


def mixed_box() -> FakeNvml:
    return FakeNvml([FakeDevice(), FakeDevice(name="NVIDIA L4", memory_total=23 * GiB)])


@pytest.fixture
def box(monkeypatch):
    """Make NVML report the given fake devices to every probe."""
    def use(fake: FakeNvml) -> None:
        real = nvml.probe
        monkeypatch.setattr(nvml, "probe", lambda module=None: real(fake))
    return use


def sglang_cfg(gpus) -> config.Config:
    return config.from_mapping({"engine": {"gpus": gpus, "python": "/usr/bin/python3"}})


def test_setting_accepts_numbers_and_all_only():
    assert sglang_cfg("all").engine.gpus == "all" and sglang_cfg(4).engine.gpus == 4
    assert config.gpus_setting("2") == 2  # QWENTUI_ENGINE_GPUS=2
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="engine.gpus"):
            sglang_cfg(bad)


def test_resolve_against_the_box():
    names = ["NVIDIA A10G"] * 4
    assert multigpu.resolve("all", names) == 4 and multigpu.resolve(2, names) == 2
    with pytest.raises(UsageError, match="engine.gpus = 8 but this box has 4 GPUs"):
        multigpu.resolve(8, names)
    with pytest.raises(UsageError, match="refusing --dp-size 2 over mixed GPU models"):
        multigpu.resolve(2, ["NVIDIA A10G", "NVIDIA L4"])
    assert multigpu.resolve(1, ["NVIDIA A10G", "NVIDIA L4"]) == 1
    assert multigpu.resolve("all", None) == 1 and multigpu.resolve(3, None) == 3  # no inventory


def test_four_gpu_plan_is_one_server_with_dp_size_4(box):
    box(four_a10g())
    plan = argv_mod.plan(sglang_cfg("all"), "NVIDIA A10G", create_key=False)
    argv = list(plan.argv)
    assert plan.gpus == 4
    assert argv[argv.index("--dp-size") + 1] == "4" and "--tp-size" not in argv
    one = list(argv_mod.plan(sglang_cfg(1), "NVIDIA A10G", create_key=False).argv)
    assert "--dp-size" not in one


def test_dp_size_is_managed(box):
    box(four_a10g())
    cfg = config.from_mapping({"engine": {"extra_args": ["--dp-size", "2"]}})
    with pytest.raises(UsageError, match="engine.gpus"):
        argv_mod.plan(cfg, "NVIDIA A10G", create_key=False)


def test_too_many_gpus_is_one_line_exit_2(box, capsys, monkeypatch):
    box(four_a10g())
    monkeypatch.setenv("QWENTUI_ENGINE_GPUS", "8")
    assert cli.main(["engine", "command", "--gpu", "a10g"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "engine.gpus = 8 but this box has 4 GPUs" in err[0]


@pytest.mark.skipif(not __import__("importlib").util.find_spec("sglang"), reason="SGLang is not installed here")
def test_sglang_own_parser_accepts_the_dp_argv(box):
    from sglang.srt.server_args import ServerArgs

    box(four_a10g())
    argv = list(argv_mod.plan(sglang_cfg(4), "NVIDIA A10G", create_key=False).argv)
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    args = parser.parse_args(argv[argv.index("serve") + 1:])
    assert args.dp_size == 4 and args.tp_size == 1


def test_doctor_reports_mixed_models_and_refuses_dp():
    checks = {c.label: c for c in doctor.run_checks(sglang_cfg(2), nvml=mixed_box(), sglang_probe=lambda p: None)}
    assert checks["gpus"].mark == doctor.FAIL and "mixed GPU models" in checks["gpus"].detail
    checks = {c.label: c for c in doctor.run_checks(sglang_cfg(1), nvml=mixed_box(), sglang_probe=lambda p: None)}
    assert checks["gpus"].mark == doctor.WARN and "NVIDIA A10G, NVIDIA L4" in checks["gpus"].detail
    checks = {c.label: c for c in doctor.run_checks(sglang_cfg("all"), nvml=four_a10g(), sglang_probe=lambda p: None)}
    assert checks["gpus"].mark == doctor.OK and "--dp-size 4" in checks["gpus"].detail


def test_cost_prices_every_gpu_of_the_box():
    cfg = config.Config()
    meter = Meter(cfg, clock=lambda: 1000.0, boot_time=0.0)
    meter.set_gpu("NVIDIA A10G", count=4)
    assert meter.rate == Decimal("3.0") * 4 and meter.gpu_model == "4x NVIDIA A10G"
    boxed = Meter(config.from_mapping({"cost": {"price_per_hour": 9.5}}), clock=lambda: 1000.0, boot_time=0.0)
    boxed.set_gpu("NVIDIA A10G", count=4)
    assert boxed.rate == Decimal("9.5")  # a configured box price is the whole box's


def test_gpu_pane_lists_every_gpu_120x40(snap_compare):
    from tests.test_gpu_pane import _Host, a10g, snap

    gpus = tuple(dataclasses.replace(a10g(index=i, uuid=f"GPU-{i}"), util_gpu_pct=20 + 20 * i,
                                     power_mw=100_000 + 30_000 * i) for i in range(4))
    four = snap(NvmlSnapshot("ok", gpus, driver_version="550.54.15"))
    assert snap_compare(_Host([four]), terminal_size=(120, 40))
