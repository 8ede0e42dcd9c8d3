"""Shared fixtures: isolated XDG dirs, loopback-only networking, the gpu marker."""

from __future__ import annotations

import ipaddress
import socket

import pytest


def _nvml_gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - any NVML failure means "no GPU here"
        return 0


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    if _nvml_gpu_count() > 0:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with NVML")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Keep the developer's config, ledger and cache out of every test."""
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        monkeypatch.setenv(var, str(tmp_path / "xdg" / sub))
    for name in list(__import__("os").environ):
        if name.startswith("QWENTUI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    yield tmp_path
    _end_guards()


def _end_guards() -> None:
    """A guard started by a test (directly or by a console) never outlives it."""
    import os
    import signal
    import time

    import psutil

    from qwentui.runtime.place import holder_pid, place

    # An in-process guard (a test that runs `serve` through cli.main) is this process: never signal it.
    pids = [pid for pid in (holder_pid(place(kind)) for kind in ("sim", "sglang")) if pid and pid != os.getpid()]
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs += [proc, *proc.children(recursive=True)]
            os.kill(pid, signal.SIGTERM)
        except (psutil.Error, ProcessLookupError):
            continue
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        time.sleep(0.05)
    for proc in procs:
        if _running(proc):
            proc.kill()


def _running(proc) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_real_connect = socket.socket.connect


def _loopback_only(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        if host != "localhost":
            try:
                ok = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                ok = False
            if not ok:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any connection that would leave this machine (oterm's ALLOW_MODEL_REQUESTS)."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def sim():
    """A ready SGLang simulator process (tests/simproc.py defaults); stopped after the test."""
    from tests.simproc import running_sim

    with running_sim() as proc:
        yield proc
