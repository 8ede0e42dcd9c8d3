"""The gateway child and `qwentui fleet`: argv, bad input, rejection reasons, bounded stop."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import sys
import threading
import time

import httpx
import psutil
import pytest

from qwentui import cli, config
from qwentui.config import FleetConfig
from qwentui.engine import gateway
from qwentui.errors import ConfigError, UsageError
from tests.conftest import free_port
from tests.simproc import running_sim

needs_smg = pytest.mark.skipif(gateway.find_smg() is None, reason="smg not installed: pip install 'qwentui[fleet]'")


def test_argv_keeps_metrics_on_loopback_and_passes_workers():
    fleet = FleetConfig(host="127.0.0.1", port=31000, metrics_port=31001)
    argv = gateway.build_argv("/x/smg", fleet, ["http://a:1", "http://b:2"])
    assert argv[:2] == ["/x/smg", "launch"]
    assert argv[argv.index("--worker-urls") + 1:argv.index("--worker-urls") + 3] == ["http://a:1", "http://b:2"]
    assert argv[argv.index("--prometheus-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--prometheus-port") + 1] == "31001"
    assert "--api-key" not in argv


def test_workers_are_normalized_and_duplicates_refused():
    assert gateway.normalize_workers(["http://a:1/v1/", "http://b:2"]) == ["http://a:1", "http://b:2"]
    with pytest.raises(UsageError, match="listed twice"):
        gateway.normalize_workers(["http://a:1", "http://a:1/v1"])
    with pytest.raises(UsageError, match="not an http"):
        gateway.normalize_workers(["a:1"])
    with pytest.raises(UsageError, match="no workers"):
        gateway.normalize_workers([])


def test_mixed_models_refused():
    assert gateway.check_one_model({"http://a:1": "Qwen/Qwen3-1.7B", "http://b:1": None}) == "Qwen/Qwen3-1.7B"
    with pytest.raises(UsageError, match="different models"):
        gateway.check_one_model({"http://a:1": "Qwen/Qwen3-1.7B", "http://b:1": "Qwen/Qwen3-0.6B"})


def test_fleet_config_section(tmp_path):
    cfg = config.from_mapping({"fleet": {"workers": ["http://box-a:30000"], "port": 30100}})
    assert cfg.fleet.workers == ["http://box-a:30000"] and cfg.fleet.port == 30100
    with pytest.raises(ConfigError, match="fleet.metrics_port"):
        config.from_mapping({"fleet": {"port": 29000}})
    with pytest.raises(ConfigError, match="fleet.workers"):
        config.from_mapping({"fleet": {"workers": [1]}})


def test_smg_missing_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(gateway, "find_smg", lambda: None)
    assert cli.main(["fleet", "--worker", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["qwentui: error: the fleet needs SGLang's model gateway `smg`, which is not installed: "
                   "pip install 'qwentui[fleet]'"]


def test_duplicate_worker_exit_2(capsys):
    assert cli.main(["fleet", "--worker", "http://127.0.0.1:9", "--worker", "http://127.0.0.1:9/"]) == 2
    assert "listed twice" in capsys.readouterr().err


def test_unreachable_worker_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(gateway, "find_smg", lambda: "/bin/true")
    assert cli.main(["fleet", "--worker", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "worker not reachable" in capsys.readouterr().err


def test_mixed_models_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(gateway, "find_smg", lambda: "/bin/true")
    with running_sim() as a, running_sim("--served-model-name", "other") as b:
        assert cli.main(["fleet", "--worker", a.base_url, "--worker", b.base_url]) == 2
    assert "different models" in capsys.readouterr().err


@pytest.fixture
async def gateways():
    """Build Gateways through this; whatever a test leaves running is stopped here."""
    made: list[gateway.Gateway] = []

    def make(*args, **kw) -> gateway.Gateway:
        made.append(gateway.Gateway(*args, **kw))
        return made[-1]

    yield make
    for gw in made:
        await gw.stop(grace=1.0)


@pytest.fixture
def not_an_engine():
    """A plain HTTP file server: it answers, but 404 on /health and /v1/models."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@needs_smg
async def test_gateway_shows_why_it_rejects_a_worker(not_an_engine, gateways, tmp_path):
    with running_sim() as sim:
        fleet = FleetConfig(port=free_port(), metrics_port=free_port(), stop_grace=5.0)
        gw = gateways(fleet, [sim.base_url, not_an_engine], log_path=tmp_path / "gw.log")
        with pytest.raises(gateway.WorkerRejected) as info:
            await gw.start()
    assert info.value.exit_code == 2
    assert f"the gateway rejected worker {not_an_engine}" in info.value.message
    assert "404" in info.value.message
    assert gw.status.state == "crashed" and gw.pids() == []


@needs_smg
async def test_gateway_ready_routes_and_stops_bounded(gateways, tmp_path):
    with running_sim() as a, running_sim() as b:
        fleet = FleetConfig(port=free_port(), metrics_port=free_port(), stop_grace=8.0)
        gw = gateways(fleet, [a.base_url, b.base_url], log_path=tmp_path / "gw.log")
        await gw.start()
        assert gw.status.state == "ready"
        pid = gw.status.pid
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(gw.base_url + "/v1/chat/completions",
                                  json={"model": "Qwen/Qwen3-1.7B", "max_tokens": 4,
                                        "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"]
            metrics = await client.get(gw.metrics_url)
            assert "smg_worker_health" in metrics.text
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                assert conn.laddr.ip == "127.0.0.1"  # API and Prometheus: loopback only
        await gw.stop()  # the fixture would too; here the stop itself is checked
    assert gw.status.state == "stopped" and not psutil.pid_exists(pid)


FAKE_SMG = r'''
import json, signal, sys, http.server
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a gateway that keeps draining: needs SIGKILL
argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
workers = argv[argv.index("--worker-urls") + 1:argv.index("--policy")]
print("starting: api_key=" + argv[argv.index("--api-key") + 1], flush=True)
print("INFO smg::server: Starting router on 127.0.0.1:%d" % port, flush=True)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"workers": [{"url": w, "is_healthy": True} for w in workers]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


async def test_stop_escalates_to_sigkill_and_masks_the_key(gateways, tmp_path):
    script = tmp_path / "smg"
    script.write_text(f"#!{sys.executable}\n{FAKE_SMG}")
    script.chmod(0o755)
    secret = "sk-fleet-secret-0123456789"
    fleet = FleetConfig(port=free_port(), metrics_port=free_port(), stop_grace=0.5, api_key=secret)
    phases = []
    gw = gateways(fleet, ["http://127.0.0.1:1"], smg=str(script), log_path=tmp_path / "gw.log",
                         on_status=lambda st: phases.append(st.phase))
    await gw.start()
    pid = gw.status.pid
    assert gw.status.state == "ready" and phases[:3] == ["launching", "registering workers", "ready"]
    # The key reached smg (it printed it; the log masks it) but not its command line, which every
    # local user can read; /proc/PID/environ is readable by this user only.
    assert secret not in " ".join(psutil.Process(pid).cmdline())
    started = time.monotonic()
    await gw.stop()
    assert time.monotonic() - started < 0.5 + 3.0  # grace, then SIGKILL: bounded
    assert gw.status.state == "stopped" and not psutil.pid_exists(pid)
    log = (tmp_path / "gw.log").read_text()
    assert secret not in log and "SIGKILL" in log and "starting: api_key=" in log


async def test_gateway_that_dies_after_ready_is_crashed(gateways, tmp_path):
    script = tmp_path / "smg"
    script.write_text(f"#!{sys.executable}\n{FAKE_SMG}")
    script.chmod(0o755)
    fleet = FleetConfig(port=free_port(), metrics_port=free_port(), stop_grace=0.5, api_key="k" * 12)
    gw = gateways(fleet, ["http://127.0.0.1:1"], smg=str(script), log_path=tmp_path / "gw.log")
    await gw.start()
    os.kill(gw.status.pid, signal.SIGKILL)
    for _ in range(100):
        if gw.status.state == "crashed":
            break
        await asyncio.sleep(0.02)
    assert gw.status.state == "crashed" and "code -9" in gw.status.error
    await gw.stop()


def test_a_gateway_that_is_not_a_python_script_cannot_take_a_key(tmp_path):
    binary = tmp_path / "smg"
    binary.write_bytes(b"\x7fELF not really")
    fleet = FleetConfig(api_key="k" * 12)
    workers = ["http://127.0.0.1:1"]
    with pytest.raises(UsageError, match="off the command line"):
        gateway.launch_command(str(binary), fleet, gateway.build_argv(str(binary), fleet, workers))
    argv, env = gateway.launch_command(str(binary), FleetConfig(),
                                       gateway.build_argv(str(binary), FleetConfig(), workers))
    assert argv[0] == str(binary) and env == {}

