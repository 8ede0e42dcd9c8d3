"""Phase parser, failure hints, secret masking, the rotating log, ports (no engine started)."""

from __future__ import annotations

import socket
import stat

import pytest

from qwentui.engine import attach, hints, phases, procs
from qwentui.engine.logsink import LineSplitter, LogSink, Masker
from qwentui.errors import UsageError

# Real SGLang 0.5.23 start-up lines (contracts/sglang.md §8), in order.
REAL_START = [
    "[2026-01-01 10:00:00] server_args={'model_path': 'Qwen/Qwen3-1.7B', 'api_key': 'sk-live-abcdef123456', 'port': 30000}",
    "[2026-01-01 10:00:01] Load weight begin. avail mem=14.57 GB",
    "[2026-01-01 10:00:01] Compute capability below sm80. Use float16 due to lack of bfloat16 support.",
    "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:00<00:00,  1.95it/s]",
    "[2026-01-01 10:00:05] Load weight end. elapsed=4.21 s, type=Qwen3ForCausalLM, avail mem=11.1 GB, mem usage=3.4 GB.",
    "[2026-01-01 10:00:05] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 123456, K size: 3.2 GB, V size: 3.2 GB",
    "[2026-01-01 10:00:05] Memory pool end. avail mem=4.5 GB",
    "[2026-01-01 10:00:05] Capture target prefill CUDA graph begin. backend=breakable, num_tokens=8192, avail mem=4.4 GB",
    "[2026-01-01 10:00:06] Capture target prefill CUDA graph end. elapsed=1.0, mem usage=0.1, avail mem=4.3",
    "[2026-01-01 10:00:06] Capture target decode CUDA graph begin. backend=full, num_tokens_per_req=1, avail mem=4.4 GB",
    "Capturing batches (bs=8 avail_mem=4.30 GB):  50%|█████     | 2/4 [00:01<00:01,  1.50it/s]",
    "[2026-01-01 10:00:09] Capture target decode CUDA graph end. bs=[1, 2, 4, 8], elapsed=3.1 s, mem usage=0.2 GB, avail mem=4.2 GB.",
    "[2026-01-01 10:00:09] max_total_num_tokens=123456, chunked_prefill_size=2048, max_prefill_tokens=16384, "
    "max_running_requests=16, context_len=40960, available_gpu_mem=4.2 GB",
    "[2026-01-01 10:00:09] Engine startup timings (s): load_weight=4.2, kv_cache_allocation=0.1, scheduler_e2e=9",
    "[2026-01-01 10:00:10] INFO:     Started server process [1234]",
    "[2026-01-01 10:00:10] INFO:     Waiting for application startup.",
    "[2026-01-01 10:00:10] Using default chat sampling params from model generation config: {'temperature': 0.6}",
    "[2026-01-01 10:00:10] INFO:     Application startup complete.",
    "[2026-01-01 10:00:10] INFO:     Uvicorn running on http://127.0.0.1:30000 (Press CTRL+C to quit)",
    "[2026-01-01 10:00:11] Prefill batch, #new-seq: 1, #new-token: 6, #cached-token: 0, token usage: 0.00, "
    "#running-req: 0, #queue-req: 0",
    "[2026-01-01 10:00:12] The server is fired up and ready to roll!",
]


def test_phases_follow_the_real_start_up_lines():
    seen = []
    current = phases.LAUNCHING
    for line in REAL_START:
        current = phases.advance(current, line)
        if not seen or seen[-1] != current:
            seen.append(current)
    assert seen == list(phases.PHASES)


@pytest.mark.parametrize("line,phase", [
    (REAL_START[1], phases.LOADING), (REAL_START[3], phases.LOADING), (REAL_START[5], phases.KV_CACHE),
    (REAL_START[6], phases.KV_CACHE), (REAL_START[7], phases.CUDA_GRAPHS), (REAL_START[10], phases.CUDA_GRAPHS),
    (REAL_START[18], phases.WARMING), (REAL_START[20], phases.READY), (REAL_START[19], None), (REAL_START[0], None),
])
def test_phase_of_each_marker(line, phase):
    assert phases.phase_of(line) == phase


def test_phases_never_go_back():
    assert phases.advance(phases.WARMING, REAL_START[9]) == phases.WARMING
    assert phases.is_ready_line(REAL_START[-1])


@pytest.mark.parametrize("line,cause,fix", [
    ("RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. Current value: "
     "mem_fraction_static=0.3", "no room left for the KV cache", "--mem-fraction-static"),
    ("Exception: Capture cuda graph failed: CUDA out of memory. Tried to allocate 2.00 GiB.",
     "GPU out of memory", "lower --mem-fraction-static"),
    ("torch.OutOfMemoryError: CUDA out of memory.", "GPU out of memory", "--context-length"),
    ("ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 30000): address already in use",
     "port was taken", "engine.port"),
    ("/usr/bin/python3: No module named sglang", "SGLang is not installed", "pip install 'qwentui[sglang]'"),
    ("ModuleNotFoundError: No module named 'sglang'", "SGLang is not installed", "engine.python"),
    ("ModuleNotFoundError: No module named 'torch'", "missing a module (torch)", "requirements-sglang"),
    ("OSError: We couldn't connect to 'https://huggingface.co' to load this file", "hub cannot be reached",
     "huggingface-cli download"),
    ("huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder",
     "not available locally", "engine.model"),
    ("RuntimeError: SGLang only supports sm75 and above.", "too old", "T4 or newer"),
    ("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0.",
     "no bfloat16", "float16"),
    # quoted from srt/layers/attention/attention_registry.py (note the backticks)
    ("AssertionError: FlashAttention v3 Backend requires SM>=80 and SM<=90. "
     "Please use `--attention-backend flashinfer`.", "FlashAttention-3", "flashinfer"),
    ("AssertionError: Cross attention is not supported in the triton attention backend. "
     "Please use `--attention-backend flashinfer`.", "attention backend cannot run", "flashinfer"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "illegal memory access",
     "restart the engine"),
    ("Rank 0 scheduler died during initialization (exit code: -9). If exit code is -9 (SIGKILL), a common cause "
     "is the OS OOM killer.", "OOM killer", "host memory"),
    ("sglang serve: error: unrecognized arguments: --bogus", "rejected a launch flag", "engine.extra_args"),
])
def test_hints_for_known_failures(line, cause, fix):
    found = hints.diagnose(["[ts] some line", line, "[ts] Received sigquit from a child process."], 1)
    assert found is not None and cause in found.cause and fix in found.hint


def test_scheduler_crash_is_not_blamed_on_the_oom_killer():
    """Issue 16 item 17: SGLang's own crash path ends in SIGKILL (exit -9) too."""
    tail = ["[ts] Scheduler hit an exception: Traceback (most recent call last):",
            '  File "sglang/srt/managers/scheduler.py", line 3104, in run_scheduler_process',
            "    scheduler.event_loop_overlap()",
            "RuntimeError: CUDA error: an illegal memory access was encountered",
            "[ts] SIGQUIT received. signum=3, frame=None. It usually means one child failed."]
    found = hints.diagnose(tail, -9)
    assert "illegal memory access" in found.cause and "OOM" not in found.cause.replace("not the OOM", "")
    other = hints.diagnose(["[ts] Scheduler hit an exception: Traceback", "ValueError: boom",
                            "[ts] Subprocess scheduler_0 (pid=12) crashed with exit code 1. "
                            "Triggering SIGQUIT for cleanup..."], -9)
    assert "child process (scheduler) failed" in other.cause and "SIGKILL" not in other.cause


def test_hint_from_exit_status_alone():
    assert "SIGKILL" in hints.diagnose(["nothing useful"], -9).cause
    assert hints.diagnose(["nothing useful"], 1) is None


def test_masker_hides_the_key_in_server_args():
    mask = Masker(["sk-live-abcdef123456"])
    out = mask(REAL_START[0])
    assert "sk-live-abcdef123456" not in out and "'api_key': 'sk-l…(20 chars)'" in out


@pytest.mark.parametrize("line", [
    "server_args={'api_key': 'unknown-key-987654321', 'admin_api_key': 'admin-key-000000001'}",
    'ServerArgs(api_key="unknown-key-987654321", admin_api_key="admin-key-000000001")',
    "python -m sglang.launch_server --api-key unknown-key-987654321 --admin-api-key=admin-key-000000001",
    "api_key=unknown-key-987654321 admin_api_key=admin-key-000000001",
])
def test_masker_hides_keys_it_was_not_told_about(line):
    out = Masker()(line)
    assert "unknown-key-987654321" not in out and "admin-key-000000001" not in out


def test_masker_keeps_none_and_other_text():
    line = "server_args={'api_key': None, 'port': 30000}"
    assert Masker(["k"])(line) == line
    assert Masker()(line) == line
    assert Masker(["abc"])("server_args={'api_key': 'abc'}") == "server_args={'api_key': '****'}"


def test_line_splitter_handles_partial_lines_and_carriage_returns():
    s = LineSplitter()
    assert s.feed(b"first\nsec") == ["first"]
    assert s.feed(b"ond\r50%\r100%\r\n") == ["second", "50%", "100%"]
    assert s.feed(b"\xff tail") == [] and s.flush() == ["\ufffd tail"]


def test_log_sink_masks_rotates_and_is_private(tmp_path):
    path = tmp_path / "logs" / "engine.log"
    sink = LogSink(path, Masker(["sk-secret-0123456789"]), tail=3, max_bytes=200, backups=2)
    for i in range(20):
        sink.write(f"line {i} key=sk-secret-0123456789")
    sink.close()
    assert sink.lines() == [f"line {i} key=sk-s…(20 chars)" for i in (17, 18, 19)]
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["engine.log", "engine.log.1", "engine.log.2"]
    for name in files:
        p = path.parent / name
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert "sk-secret-0123456789" not in p.read_text()
    assert "line 19" in path.read_text()


def test_port_free_and_owner():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not procs.port_free("127.0.0.1", port)
        owner = procs.port_owner(port)
        assert owner is None or owner.startswith("pid ")
    assert procs.port_free("127.0.0.1", port)


def test_check_port_names_the_owner_and_suggests_attach(port):
    from qwentui.config import EngineConfig
    from qwentui.engine import preflight

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(UsageError, match=rf"port {port} on 127.0.0.1 is already in use.*--attach "
                                             rf"http://127.0.0.1:{port}"):
            preflight.check_port(EngineConfig(port=port))


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:30000", "http://127.0.0.1:30000"),
    ("http://127.0.0.1:30000/v1/", "http://127.0.0.1:30000"),
    ("https://box.example:8443/prefix/v1", "https://box.example:8443/prefix"),
])
def test_attach_url_normalised(url, expected):
    assert attach.normalize_url(url) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:30000", "ftp://x", "http://", "http://h:99999"])
def test_attach_url_bad(url):
    with pytest.raises(UsageError, match="--attach"):
        attach.normalize_url(url)


@pytest.mark.parametrize("name,cls", [
    ("Tesla T4", "T4"), ("NVIDIA L4", "L4"), ("NVIDIA A10G", "A10G"), ("NVIDIA A10", "A10G"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA GeForce RTX 4090", "other"), ("NVIDIA L40S", "other"),
])
def test_gpu_class_for_presets(name, cls):
    from qwentui.telemetry import nvml as gpu

    assert gpu.gpu_class(name) == cls
