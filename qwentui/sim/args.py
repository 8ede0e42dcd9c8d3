"""Launch flags: SGLang 0.5.23's (contract §1) plus the simulator's own `--sim-*` switches.

Unknown flags are argparse errors with exit code 2, as in `sglang serve`. Flags that change
nothing in a simulator are accepted and reported once as ignored.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Sequence

DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
KV_DTYPES = ("auto", "fp8_e5m2", "fp8_e4m3", "mxfp8", "bf16", "bfloat16", "nvfp4", "fp4_mx_block16")
QUANTIZATIONS = (
    "awq fp8 mxfp8 gptq gptq_marlin awq_marlin bitsandbytes gguf modelopt modelopt_fp8 modelopt_fp4 "
    "nvfp4_online modelopt_mixed petit_nvfp4 w8a8_int8 w8a8_fp8 moe_wna16 w4afp8 mxfp4 auto-round "
    "auto-round-int8 compressed-tensors modelslim mxfp_w4a8 quark quark_int4fp8_moe quark_mxfp4 mlx_q4 "
    "mlx_q8 unquant humming"
).split()
REASONING_PARSERS = (
    "auto apertus2509 beam deepseek-r1 deepseek-v3 deepseek-v4 deepseek-v41 dots glm45 ling3 hunyuan "
    "gpt-oss k2_horizon kimi kimi_k2 kimi_k3 mimo muse poolside_v1 qwen3 qwen3-thinking minimax "
    "minimax-append-think minimax-m3 nanbeige step3 step3p5 mistral nemotron_3 granite_thinking_parser "
    "interns1 gemma4 inkling iquest_q1 cohere_command4 gigachat35 response_template"
).split()
ATTENTION_BACKENDS = (
    "triton torch_native flex_attention dsa nsa qsa dsv4 compressed fa3 fa4 flashinfer llada2_cfg_flashinfer "
    "flashmla trtllm_mla cutedsl_mla tokenspeed_mla trtllm_mha hpc_ops minicpm_flashattn minicpm_flashinfer "
    "aiter wave intel_amx ascend intel_xpu"
).split()
GRAPH_BACKENDS = ("full", "breakable", "disabled")

# Flags whose value the simulator uses; every other SGLang flag is accepted and ignored.
EFFECTIVE = {
    "model_path", "served_model_name", "host", "port", "api_key", "admin_api_key", "mem_fraction_static",
    "context_length", "dtype", "reasoning_parser", "enable_metrics", "max_running_requests",
    "max_total_tokens", "chunked_prefill_size", "tp_size", "log_level", "log_level_http",
    "skip_server_warmup", "disable_cuda_graph", "enable_cache_report", "default_chat_template_kwargs",
    "stream_response_default_include_usage", "allow_auto_truncate", "decode_log_interval",
    "uvicorn_access_log_exclude_prefixes", "tokenizer_path", "preferred_sampling_params", "random_seed",
}
SIM_DEFAULT_COLD_START = 3.0
DEFAULT_CONTEXT_LEN = 40960  # Qwen3-1.7B config.json max_position_embeddings


def human_readable_int(value: str) -> int:
    """SGLang's int parser: `32k` = 32000, `32Ki` = 32768, plain digits as is."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)\s*", value)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid human-readable int: {value!r}")
    number, unit, binary = m.groups()
    power = " KMG".index(unit.upper()) if unit else 0
    return int(float(number) * ((1024 if binary else 1000) ** power))


def sim_duration(value: str) -> float:
    """Seconds from `3s`, `250ms`, `1m` or a bare number; zero allowed."""
    from qwentui.config import parse_duration
    from qwentui.errors import ConfigError

    if value.strip() in ("0", "0s", "0ms", "0.0"):
        return 0.0
    try:
        return parse_duration(value, "duration")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def json_dict(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return parsed


def _sim_gpu(value: str) -> str:
    from qwentui.sim.gpu import card_for

    try:
        card_for(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value.strip().upper()


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--model-path", "--model", dest="model_path", required=True, help="model dir or HF repo id")
    a("--tokenizer-path", default=None)
    a("--served-model-name", default=None)
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=30000)
    a("--api-key", default=None)
    a("--admin-api-key", default=None)
    a("--mem-fraction-static", type=float, default=None)
    a("--context-length", type=human_readable_int, default=None)
    a("--dtype", choices=DTYPES, default="auto")
    a("--kv-cache-dtype", choices=KV_DTYPES, default="auto")
    a("--quantization", choices=QUANTIZATIONS, default=None)
    a("--load-format", default="auto")
    a("--reasoning-parser", choices=REASONING_PARSERS, default=None)
    a("--tool-call-parser", default=None)
    a("--enable-metrics", action="store_true")
    a("--enable-metrics-for-all-schedulers", action="store_true")
    a("--max-running-requests", type=int, default=None)
    a("--chunked-prefill-size", type=int, default=None)
    a("--max-total-tokens", type=human_readable_int, default=None)
    a("--tp-size", "--tensor-parallel-size", dest="tp_size", type=int, default=1)
    a("--dp-size", "--data-parallel-size", dest="dp_size", type=int, default=1)
    a("--log-level", default="info")
    a("--log-level-http", default=None)
    a("--skip-server-warmup", action="store_true")
    a("--trust-remote-code", action="store_true")
    a("--enable-cache-report", action="store_true")
    a("--sampling-defaults", choices=("openai", "model"), default="model")
    a("--preferred-sampling-params", type=json_dict, default=None)
    a("--default-chat-template-kwargs", type=json_dict, default=None)
    a("--stream-response-default-include-usage", action="store_true")
    a("--allow-auto-truncate", action="store_true")
    a("--decode-log-interval", type=int, default=40)
    a("--random-seed", type=int, default=None)
    a("--enable-memory-saver", action="store_true")
    a("--sleep-on-idle", action="store_true")
    a("--watchdog-timeout", type=float, default=300)
    a("--soft-watchdog-timeout", type=float, default=None)
    a("--dist-timeout", type=int, default=None)
    a("--tokenizer-worker-num", type=int, default=1)
    a("--uvicorn-access-log-exclude-prefixes", nargs="*", default=[])


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--attention-backend", choices=ATTENTION_BACKENDS, default=None)
    a("--prefill-attention-backend", choices=ATTENTION_BACKENDS, default=None)
    a("--decode-attention-backend", choices=ATTENTION_BACKENDS, default=None)
    a("--disable-cuda-graph", action="store_true", help="deprecated in SGLang; still accepted")
    a("--disable-decode-cuda-graph", action="store_true")
    a("--disable-prefill-cuda-graph", action="store_true")
    a("--cuda-graph-backend-decode", choices=GRAPH_BACKENDS, default=None)
    a("--cuda-graph-backend-prefill", choices=GRAPH_BACKENDS, default=None)
    a("--cuda-graph-max-bs-decode", "--cuda-graph-max-bs", dest="cuda_graph_max_bs_decode", type=int, default=None)
    a("--disable-radix-cache", action="store_true")
    a("--schedule-policy", default="fcfs")
    a("--stream-interval", type=int, default=1)
    a("--page-size", type=int, default=1)
    a("--device", default="cuda")
    a("--base-gpu-id", type=int, default=0)
    a("--enable-torch-compile", action="store_true")


def _add_sim_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulator (qwentui only)")
    g.add_argument("--sim-cold-start", type=sim_duration, default=SIM_DEFAULT_COLD_START, metavar="DUR",
                   help="total simulated start-up time (default 3s); the port stays closed most of it")
    g.add_argument("--sim-tokens-per-s", type=positive_float, default=150.0, metavar="N",
                   help="decode speed per request (default 150)")
    g.add_argument("--sim-ttft", type=sim_duration, default=0.05, metavar="DUR",
                   help="time to first token after a request gets a slot (default 50ms)")
    g.add_argument("--sim-crash-after", type=sim_duration, default=None, metavar="DUR",
                   help="the scheduler child crashes this long after launch; the server then dies like SGLang")
    g.add_argument("--sim-ignore-sigterm", action="store_true", help="ignore SIGTERM (tests SIGKILL escalation)")
    g.add_argument("--sim-oom", action="store_true",
                   help="fail start-up like a CUDA OOM (KV pool too small when --mem-fraction-static < 0.5)")
    g.add_argument("--sim-seed", type=int, default=0, metavar="N", help="seed for the deterministic text")
    g.add_argument("--sim-scheduler-exit", type=sim_duration, default=1.0, metavar="DUR",
                   help="how long the scheduler takes to free GPU memory and exit after ShutdownReq (default 1s)")
    g.add_argument("--sim-unhealthy-after", type=sim_duration, default=None, metavar="DUR",
                   help="this long after ready a health generation fails: status UnHealthy, /health and "
                        "/ready 503, SIGTERM skips the drain")
    g.add_argument("--sim-gpu", type=_sim_gpu, default=None, metavar="CLASS",
                   help="publish NVML-shaped readings of a simulated GPU (T4, L4, A10G, A100, H100) at "
                        "/qwentui/sim_gpu, labelled SIMULATED")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sglang serve", description="qwentui's SGLang SIMULATOR (no model is loaded)")
    _add_server_flags(p)
    _add_backend_flags(p)
    _add_sim_flags(p)
    return p


def merge_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--config FILE.yaml` as SGLang's ConfigArgumentMerger reads it
    (srt/server_args_config_parser.py): the file's keys become `--key value` words placed
    *before* the rest of argv, so the command line wins; a true store_true key adds the bare
    flag, a false one adds nothing; a list adds its items; one --config at most."""
    if "--config" not in argv:
        return argv
    at = [i for i, word in enumerate(argv) if word == "--config"]
    if len(at) > 1:
        parser.error("Multiple config files specified! Only one allowed.")
    i = at[0]
    if i == len(argv) - 1:
        parser.error("No config file specified after --config flag!")
    values = _read_config(parser, argv[i + 1])
    switches = {o.lstrip("-") for a in parser._actions  # noqa: SLF001 - argparse has no public table
                for o in a.option_strings if isinstance(a, argparse._StoreTrueAction)}  # noqa: SLF001
    words: list[str] = []
    for key, value in values.items():
        if isinstance(value, bool):
            words += ([f"--{key}"] if value else []) if key in switches else [f"--{key}", str(value).lower()]
        elif isinstance(value, list):
            words += [f"--{key}", *map(str, value)] if value else []
        else:
            words += [f"--{key}", str(value)]
    return words + argv[:i] + argv[i + 2:]


def _read_config(parser: argparse.ArgumentParser, path: str) -> dict:
    import os

    if os.path.splitext(path)[1].lower() not in (".yaml", ".yml"):
        parser.error(f"Config file must be YAML format, got: {os.path.splitext(path)[1]}")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        parser.error(f"Config file not found: {path}")
    try:
        import yaml

        data = yaml.safe_load(text)
    except ImportError:  # PyYAML is SGLang's dependency, not ours: JSON is the YAML we write
        data = json.loads(text) if text.strip() else None
    except Exception as exc:  # noqa: BLE001 - any YAML error is a bad file
        parser.error(f"Failed to read config file {path}: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        parser.error("Config file must contain a dictionary at root level")
    return data


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and resolve defaults the way SGLang's ServerArgs does; exit 2 on bad flags."""
    import sys

    parser = build_parser()
    argv = merge_config(parser, list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.served_model_name is None:
        args.served_model_name = args.model_path
    if ":" in args.served_model_name:
        parser.error("--served-model-name must not contain ':'")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1-65535, got {args.port}")
    if args.max_running_requests is not None and args.max_running_requests < 1:
        parser.error("--max-running-requests must be >= 1")
    if args.tokenizer_path is None:
        args.tokenizer_path = args.model_path
    args.context_length_explicit = args.context_length is not None
    if args.context_length is None:
        args.context_length = DEFAULT_CONTEXT_LEN
    args.ignored = sorted(_given_ignored(parser, argv))
    return args


def _given_ignored(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """Flags the user set that have no effect here (for one warning line)."""
    import sys

    given = set()
    tokens = list(sys.argv[1:] if argv is None else argv)
    for action in parser._actions:  # noqa: SLF001 - argparse has no public option table
        if action.dest in EFFECTIVE or action.dest.startswith("sim_") or not action.option_strings:
            continue
        if any(t == o or t.startswith(o + "=") for t in tokens for o in action.option_strings):
            given.add(action.option_strings[0])
    return given


def server_args_dict(args: argparse.Namespace) -> dict:
    """What `server_args=` and `/server_info` show (api_key in clear, as SGLang does)."""
    out = {k: v for k, v in vars(args).items() if not k.startswith("sim_") and k not in ("ignored", "context_length_explicit")}
    out["context_length"] = args.context_length if args.context_length_explicit else None
    out["simulated"] = True
    return out
