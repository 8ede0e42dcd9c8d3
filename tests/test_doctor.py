"""`qwentui doctor`: each check with a fake NVML and a fake SGLang probe."""

from __future__ import annotations

import dataclasses
import json
import socket
from types import SimpleNamespace

import pytest

from qwentui import cli
from qwentui.config import Config
from qwentui.commands import doctor
from qwentui.telemetry import nvml as gpu

GiB = 1024**3


class FakeNvml:
    """The few pynvml calls the engine uses; `devices` = [(name, total bytes, (major, minor))]."""

    def __init__(self, devices, *, fail_init: bool = False) -> None:
        self.devices = devices
        self.fail_init = fail_init

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's name
        pass

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    cuda = 13000

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.devices[h][0]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=self.devices[h][1])

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self.devices[h][2]


def checks(cfg=None, nvml=None, sglang="0.5.23", error="", platform=("3.12", "2.35")):
    return doctor.run_checks(cfg if cfg is not None or error else Config(), error,
                             nvml=nvml or FakeNvml([]), sglang_probe=lambda python: sglang,
                             platform_probe=lambda python: platform)


def by_label(items, label):
    return [c for c in items if c.label == label]


def test_t4_box_all_good():
    items = checks(nvml=FakeNvml([("Tesla T4", 15 * GiB, (7, 5))]))
    gpu_line = by_label(items, "gpu")[0]
    assert gpu_line.mark == doctor.OK
    assert "Tesla T4" in gpu_line.detail and "class T4" in gpu_line.detail and "preset t4" in gpu_line.detail
    assert "1.8" in gpu_line.detail and "fits" in gpu_line.detail
    nvidia = by_label(items, "nvidia")[0]
    assert "550.54.15" in nvidia.detail and "CUDA 13.0" in nvidia.detail
    assert by_label(items, "sglang")[0].mark == doctor.OK
    assert not [c for c in items if c.mark == doctor.FAIL]


def test_no_gpu_fails_for_sglang_but_only_warns_for_the_simulator():
    nvml = FakeNvml([], fail_init=True)
    real = by_label(checks(nvml=nvml), "gpu")[0]
    assert real.mark == doctor.FAIL and "--demo" in real.hint
    cfg = dataclasses.replace(Config(), engine=dataclasses.replace(Config().engine, kind="sim"))
    sim = checks(cfg, nvml=nvml, sglang=None)
    assert by_label(sim, "gpu")[0].mark == doctor.WARN
    assert by_label(sim, "sglang")[0].mark == doctor.WARN
    assert not [c for c in sim if c.mark == doctor.FAIL]


def test_missing_sglang_is_a_failure_with_the_install_hint():
    line = by_label(checks(nvml=FakeNvml([("NVIDIA L4", 22 * GiB, (8, 9))]), sglang=None), "sglang")[0]
    assert line.mark == doctor.FAIL and "pip install 'qwentui[sglang]'" in line.hint


def test_other_sglang_version_warns():
    assert by_label(checks(sglang="0.4.0"), "sglang")[0].mark == doctor.WARN


def test_model_does_not_fit_on_a_small_card():
    cfg = dataclasses.replace(Config(), engine=dataclasses.replace(
        Config().engine, overrides={"--context-length": 40960}))
    line = by_label(checks(cfg, nvml=FakeNvml([("NVIDIA GeForce GTX 1660", 6 * GiB, (7, 5))])), "gpu")[0]
    assert line.mark == doctor.FAIL and "does NOT fit" in line.detail and "preset generic-cuda" in line.detail


def test_gpu_too_old_for_sglang():
    line = by_label(checks(nvml=FakeNvml([("Tesla V100-SXM2-16GB", 16 * GiB, (7, 0))])), "gpu")[0]
    assert line.mark == doctor.FAIL and "sm75" in line.detail


def test_port_taken_fails(port):
    cfg = dataclasses.replace(Config(), engine=dataclasses.replace(Config().engine, port=port))
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        line = by_label(checks(cfg), "port")[0]
    assert line.mark == doctor.FAIL and "already in use" in line.detail


def test_bad_config_is_reported_not_raised():
    items = checks(None, error="config.toml:3: engine.port must be an integer 1-65535")
    assert by_label(items, "config")[0].mark == doctor.FAIL


def test_public_host_reports_the_key_without_creating_it():
    from qwentui.engine import apikey

    cfg = dataclasses.replace(Config(), engine=dataclasses.replace(Config().engine, host="0.0.0.0"))
    line = by_label(checks(cfg), "api key")[0]
    assert "will be generated" in line.detail and not apikey.key_path().exists()


def test_gpu_probe_tolerates_nvml_errors():
    class Broken(FakeNvml):
        def nvmlDeviceGetCount(self):
            raise RuntimeError("GPU is lost")

    assert gpu.probe(Broken([])).status == "error"
    assert gpu.probe(FakeNvml([], fail_init=True)).status == "no-nvml"
    assert gpu.probe(FakeNvml([])).status == "no-gpu"
    assert gpu.detect_gpu_name(FakeNvml([("NVIDIA A10G", 22 * GiB, (8, 6))])) == "NVIDIA A10G"


def test_doctor_command_exit_codes_and_marks(capsys, monkeypatch):
    monkeypatch.setattr(gpu, "probe", lambda nvml=None: gpu.GpuReport("no-nvml", message="NVML unavailable"))
    assert cli.main(["doctor", "--demo"]) == 0
    out = capsys.readouterr().out
    assert "✓ python" in out and "– gpu: NVML unavailable (not needed for the simulator)" in out
    assert cli.main(["doctor", "--engine", "sglang"]) == 1
    out = capsys.readouterr().out
    assert "✗ gpu" in out and "    fix: " in out


def test_doctor_json(capsys, monkeypatch):
    monkeypatch.setattr(gpu, "probe", lambda nvml=None: gpu.GpuReport("no-gpu", message="NVML sees no GPU"))
    assert cli.main(["doctor", "--demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and {c["label"] for c in data["checks"]} >= {"python", "port", "state dir"}


def test_doctor_with_a_broken_config_file(capsys, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[engine]\nport = 0\n")
    assert cli.main(["--config", str(bad), "doctor"]) == 1
    assert "✗ config:" in capsys.readouterr().out


@pytest.mark.gpu
def test_real_gpu_is_classified():
    report = gpu.probe()
    assert report.status == "ok" and report.gpus[0].memory_total_bytes > 0
    assert gpu.gpu_class(report.gpus[0].name) in gpu.GPU_CLASSES + ("other",)


T4 = [("Tesla T4", 15 * GiB, (7, 5))]


@pytest.mark.parametrize("platform,cuda,problem,fix", [
    (("3.10", "2.35"), 13000, "Python 3.10 (needs 3.11-3.13)", "engine.python"),
    (("3.14", "2.35"), 13000, "Python 3.14", "python3.12 -m venv"),
    (("3.12", "2.31"), 13000, "glibc 2.31 (wheels need manylinux_2_34", "Ubuntu 22.04+"),
    (("3.12", "2.35"), 12040, "driver CUDA 12.4 (SGLang 0.5.23 is built for CUDA 13)", "580 or newer"),
])
def test_platform_that_cannot_install_the_pinned_sglang(platform, cuda, problem, fix):
    nvml = FakeNvml(T4)
    nvml.cuda = cuda
    line = by_label(checks(nvml=nvml, platform=platform), "sglang-platform")[0]
    assert line.mark == doctor.FAIL and problem in line.detail and fix in line.hint
    sim_cfg = dataclasses.replace(Config(), engine=dataclasses.replace(Config().engine, kind="sim"))
    assert by_label(checks(sim_cfg, nvml=nvml, platform=platform), "sglang-platform")[0].mark == doctor.WARN


def test_platform_that_fits_and_the_real_probe():
    line = by_label(checks(nvml=FakeNvml(T4)), "sglang-platform")[0]
    assert line.mark == doctor.OK and "Python 3.12, glibc 2.35, driver CUDA 13.0" in line.detail
    import sys

    py, glibc = doctor.engine_platform(sys.executable)
    assert py == "%d.%d" % sys.version_info[:2] and (glibc == "" or glibc[0].isdigit())


def test_sglang_extra_has_an_environment_marker():
    import pathlib
    import tomllib

    project = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    (req,) = project["optional-dependencies"]["sglang"]
    assert req.startswith("sglang==0.5.23;") and "python_version >= '3.11'" in req
    assert "python_version < '3.14'" in req and "sys_platform == 'linux'" in req
