"""NVML layer: every state through the fake pynvml, gpu_class, and the real path on a GPU."""

from __future__ import annotations

import copy
import json
import sys

import pytest

from qwentui.telemetry import NA, Nvml, gpu_class, is_na
from tests import fake_nvml as fk
from tests.fake_nvml import FakeDevice, FakeNvml

GiB = 1024**3


@pytest.mark.parametrize("name, cls", [
    ("Tesla T4", "T4"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA A10", "A10G"),
    ("NVIDIA A100-SXM4-40GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 PCIe", "H100"),
    ("NVIDIA L40S", "other"),
    ("NVIDIA GeForce RTX 4090", "other"),
    ("NVIDIA H200", "other"),
    ("", "other"),
])
def test_gpu_class(name, cls):
    assert gpu_class(name) == cls


def test_na_is_a_quiet_value():
    assert not NA and str(NA) == "n/a" and f"{NA:.1f}" == "n/a"
    assert NA + 1 is NA and 2 * NA is NA and (NA > 0) is False and (NA <= 0) is False
    assert copy.deepcopy(NA) is NA and is_na(NA) and not is_na(0)


def test_healthy_gpu_reads_every_field():
    fake = FakeNvml([FakeDevice(name="NVIDIA A10G", memory_used=20 * GiB, util_gpu=37, util_mem=12,
                                temperature=62, power_mw=148_000, processes=[(4242, 17 * GiB), (9, GiB)])])
    snap = Nvml(module=fake).sample([4242, 4243])
    assert snap.status == "ok" and snap.available and snap.driver_version == "550.54.15"
    (g,) = snap.gpus
    assert (g.name, g.gpu_class, g.status) == ("NVIDIA A10G", "A10G", "ok")
    assert (g.memory_used_bytes, g.memory_total_bytes) == (20 * GiB, 24 * GiB)
    assert (g.util_gpu_pct, g.util_mem_pct, g.temperature_c) == (37, 12, 62)
    assert (g.power_mw, g.power_limit_mw, g.clock_sm_mhz, g.clock_mem_mhz) == (148_000, 300_000, 1710, 6251)
    assert (g.engine_memory_bytes, g.engine_memory_source) == (17 * GiB, "process")
    assert g.other_memory_bytes == 3 * GiB


def test_init_once_and_shutdown_on_close():
    fake = FakeNvml()
    nvml = Nvml(module=fake)
    for _ in range(5):
        nvml.sample()
    assert fake.init_calls == 1 and fake.calls.count("nvmlDeviceGetName") == 1  # static fields read once
    nvml.close()
    nvml.close()
    assert fake.shutdown_calls == 1 and fake.initialized == 0


def test_library_missing_is_a_state_and_retried_rarely():
    now = [0.0]
    fake = FakeNvml(init_error=fk.NVMLError_LibraryNotFound)
    nvml = Nvml(module=fake, clock=lambda: now[0], retry_after=60)
    snap = nvml.sample([1])
    assert snap.status == "no-nvml" and snap.gpus == () and "NVML library not found" in snap.message
    now[0] = 30
    assert nvml.sample().status == "no-nvml" and fake.init_calls == 1
    now[0] = 61
    fake.init_error = None  # driver installed meanwhile
    assert nvml.sample().status == "ok" and fake.init_calls == 2


def test_pynvml_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    snap = Nvml().sample()
    assert snap.status == "no-nvml" and "nvidia-ml-py" in snap.message


@pytest.mark.parametrize("error, status, words", [
    (fk.NVMLError_DriverNotLoaded, "no-gpu", "driver not loaded"),
    (fk.NVMLError_LibRmVersionMismatch, "error", "version mismatch"),
    (fk.NVMLError_Unknown, "error", "NVML init failed"),
])
def test_init_errors_map_to_states(error, status, words):
    snap = Nvml(module=FakeNvml(init_error=error)).sample()
    assert snap.status == status and words in snap.message


def test_no_gpu():
    snap = Nvml(module=FakeNvml([])).sample()
    assert snap.status == "no-gpu" and not snap.available and snap.message == "NVML sees no GPU"


def test_not_supported_power_and_temperature_are_na():
    dev = FakeDevice(errors={"nvmlDeviceGetPowerUsage": fk.NVMLError_NotSupported,
                             "nvmlDeviceGetTemperature": fk.NVMLError_NotSupported,
                             "nvmlDeviceGetEnforcedPowerLimit": fk.NVMLError_NotSupported})
    (g,) = Nvml(module=FakeNvml([dev])).sample().gpus
    assert g.status == "ok" and g.power_mw is NA and g.temperature_c is NA and g.power_limit_mw is NA
    assert g.memory_used_bytes == GiB
    assert g.to_dict()["power_mw"] is None and json.dumps(g.to_dict())


def test_gpu_lost_mid_session_is_per_gpu_state():
    fake = FakeNvml([FakeDevice(name="Tesla T4"), FakeDevice(name="NVIDIA L4")])
    nvml = Nvml(module=fake)
    assert [g.status for g in nvml.sample().gpus] == ["ok", "ok"]
    fake.devices[1].lost = True
    snap = nvml.sample()
    assert snap.status == "ok"
    ok, lost = snap.gpus
    assert ok.status == "ok" and ok.memory_used_bytes == GiB
    assert (lost.status, lost.name, lost.gpu_class) == ("lost", "NVIDIA L4", "L4")
    assert lost.memory_used_bytes is NA and "lost" in lost.message.lower()


def test_gpu_lost_before_discovery():
    fake = FakeNvml([FakeDevice(lost=True)])
    (g,) = Nvml(module=fake).sample().gpus
    assert g.status == "lost"


def test_unexpected_exception_is_error_state():
    fake = FakeNvml()
    fake.nvmlDeviceGetMemoryInfo = lambda h: 1 / 0
    snap = Nvml(module=fake).sample()
    assert snap.status == "error" and "division by zero" in snap.message


def test_missing_function_is_na_not_a_crash():
    fake = FakeNvml()
    fake.nvmlDeviceGetClockInfo = None
    (g,) = Nvml(module=fake).sample().gpus
    assert g.clock_sm_mhz is NA and g.status == "ok"


def test_container_pids_fall_back_to_baseline():
    """NVML reports host PIDs in a container: attribute memory growth since the baseline."""
    dev = FakeDevice(memory_used=GiB // 2, processes=[(777001, None)])
    fake = FakeNvml([dev])
    nvml = Nvml(module=fake)
    assert nvml.mark_baseline() == {0: GiB // 2}
    dev.memory_used = 18 * GiB
    dev.processes = [(777001, 17 * GiB)]  # a host PID we can't match
    (g,) = nvml.sample([31, 32]).gpus
    assert (g.engine_memory_bytes, g.engine_memory_source) == (18 * GiB - GiB // 2, "baseline")
    assert g.other_memory_bytes == GiB // 2


def test_no_baseline_and_no_pid_match_is_unknown():
    (g,) = Nvml(module=FakeNvml([FakeDevice(processes=[(5, GiB)])])).sample([31]).gpus
    assert g.engine_memory_bytes is NA and g.engine_memory_source == "unknown"
    assert g.other_memory_bytes == g.memory_used_bytes


def test_pids_visible_on_one_gpu_means_zero_on_the_other():
    fake = FakeNvml([FakeDevice(memory_used=10 * GiB, processes=[(31, 9 * GiB)]),
                     FakeDevice(memory_used=5 * GiB, processes=[(99, 4 * GiB)])])
    nvml = Nvml(module=fake)
    nvml.mark_baseline()
    a, b = nvml.sample([31]).gpus
    assert (a.engine_memory_bytes, a.engine_memory_source) == (9 * GiB, "process")
    assert (b.engine_memory_bytes, b.engine_memory_source) == (0, "process")


def test_no_engine_means_zero_engine_memory():
    (g,) = Nvml(module=FakeNvml()).sample([]).gpus
    assert (g.engine_memory_bytes, g.engine_memory_source) == (0, "none")


def test_gpu_names_for_presets():
    assert Nvml(module=FakeNvml([FakeDevice(name="Tesla T4")])).gpu_names() == ["Tesla T4"]
    assert Nvml(module=FakeNvml(init_error=fk.NVMLError_LibraryNotFound)).gpu_names() == []


def test_bytes_names_are_decoded():
    fake = FakeNvml()
    fake.nvmlDeviceGetName = lambda h: b"Tesla T4\xff"
    (g,) = Nvml(module=fake).sample().gpus
    assert g.name == "Tesla T4\ufffd" and g.gpu_class == "T4"


@pytest.mark.gpu
def test_real_nvml():
    import pynvml

    nvml = Nvml(module=pynvml)
    snap = nvml.sample()
    print(json.dumps(snap.to_dict(), indent=1))
    assert snap.status == "ok" and snap.gpus
    g = snap.gpus[0]
    assert g.status == "ok" and g.name and g.memory_total_bytes > 0
    assert 0 <= g.memory_used_bytes <= g.memory_total_bytes
    assert g.util_gpu_pct is NA or 0 <= g.util_gpu_pct <= 100
    assert nvml.gpu_names()[0] == g.name
    baseline = nvml.mark_baseline()
    assert baseline[0] == pytest.approx(g.memory_used_bytes, rel=0.5, abs=512 * 1024**2)
    nvml.close()


def test_lost_gpu_has_no_engine_share():
    fake = FakeNvml([FakeDevice(processes=[(31, GiB)]), FakeDevice(lost=True)])
    ok, lost = Nvml(module=fake).sample([31]).gpus
    assert ok.engine_memory_bytes == GiB
    assert lost.status == "lost" and lost.engine_memory_bytes is NA and lost.engine_memory_source == "unknown"


def test_handle_error_is_error_not_lost():
    fake = FakeNvml([FakeDevice()])
    fake.nvmlDeviceGetHandleByIndex = lambda i: (_ for _ in ()).throw(fk.NVMLError_NoPermission())
    (g,) = Nvml(module=fake).sample().gpus
    assert g.status == "error" and g.message == "NVML cannot open this GPU"


def test_inventory_goes_through_the_same_gateway_as_samples():
    """`probe()` (doctor, preset choice) and the pane's samples share one NVML gateway."""
    from qwentui.telemetry.nvml import probe

    fake = FakeNvml([FakeDevice(name="Tesla T4", memory_total=16 * GiB), FakeDevice(name="NVIDIA A10G")])
    report = probe(fake)
    assert report.status == "ok" and report.driver == fake.driver
    assert [(g.index, g.name, g.memory_total_bytes) for g in report.gpus] == [
        (0, "Tesla T4", 16 * GiB), (1, "NVIDIA A10G", 24 * GiB)]
    assert fake.initialized == 0  # probe shuts NVML down again

    assert probe(FakeNvml([], init_error=fk.NVMLError_LibraryNotFound)).status == "no-nvml"
    assert probe(FakeNvml([])).status == "no-gpu"
    lost = probe(FakeNvml([FakeDevice(lost=True)]))
    assert lost.status == "error" and lost.gpus == ()
