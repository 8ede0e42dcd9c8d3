"""The SGLang 0.5.23 launch flags qwentui knows (contracts/sglang.md §1) and their value rules.

Presets may only use flags from this table. User `overrides` and `extra_args` may use any
flag (SGLang has hundreds); a known flag's value is still checked here, before the launch,
so a typo fails in a second instead of after a minute of weight loading.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from qwentui.errors import UsageError


@dataclass(frozen=True)
class Flag:
    kind: str  # "str" | "int" | "float" | "hrint" | "bool" | "json" | "list"
    choices: tuple[str, ...] = ()


def _choices(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ATTENTION = _choices(
    "triton torch_native flex_attention dsa nsa qsa dsv4 compressed fa3 fa4 flashinfer llada2_cfg_flashinfer "
    "flashmla trtllm_mla cutedsl_mla tokenspeed_mla trtllm_mha hpc_ops minicpm_flashattn minicpm_flashinfer "
    "aiter wave intel_amx ascend intel_xpu")
GRAPH_BACKENDS = _choices("full breakable disabled")

FLAGS: dict[str, Flag] = {
    "--model-path": Flag("str"), "--model": Flag("str"),
    "--served-model-name": Flag("str"), "--host": Flag("str"), "--port": Flag("int"),
    "--api-key": Flag("str"), "--admin-api-key": Flag("str"),
    "--mem-fraction-static": Flag("float"),
    "--context-length": Flag("hrint"),
    "--dtype": Flag("str", _choices("auto half float16 bfloat16 float float32")),
    "--kv-cache-dtype": Flag("str", _choices("auto fp8_e5m2 fp8_e4m3 mxfp8 bf16 bfloat16 nvfp4 fp4_mx_block16")),
    "--quantization": Flag("str", _choices(
        "awq fp8 mxfp8 gptq gptq_marlin awq_marlin bitsandbytes gguf modelopt modelopt_fp8 modelopt_fp4 "
        "nvfp4_online modelopt_mixed petit_nvfp4 w8a8_int8 w8a8_fp8 moe_wna16 w4afp8 mxfp4 auto-round "
        "auto-round-int8 compressed-tensors modelslim mxfp_w4a8 quark quark_int4fp8_moe quark_mxfp4 mlx_q4 "
        "mlx_q8 unquant humming")),
    "--reasoning-parser": Flag("str", _choices(
        "auto apertus2509 beam deepseek-r1 deepseek-v3 deepseek-v4 deepseek-v41 dots glm45 ling3 hunyuan "
        "gpt-oss k2_horizon kimi kimi_k2 kimi_k3 mimo muse poolside_v1 qwen3 qwen3-thinking minimax "
        "minimax-append-think minimax-m3 nanbeige step3 step3p5 mistral nemotron_3 granite_thinking_parser "
        "interns1 gemma4 inkling iquest_q1 cohere_command4 gigachat35 response_template")),
    "--tool-call-parser": Flag("str"),
    "--enable-metrics": Flag("bool"), "--enable-metrics-for-all-schedulers": Flag("bool"),
    "--max-running-requests": Flag("int"),
    "--chunked-prefill-size": Flag("int"),
    "--max-total-tokens": Flag("hrint"),
    "--tp-size": Flag("int"), "--tensor-parallel-size": Flag("int"),
    "--log-level": Flag("str"), "--log-level-http": Flag("str"),
    "--skip-server-warmup": Flag("bool"),
    "--disable-cuda-graph": Flag("bool"),
    "--disable-decode-cuda-graph": Flag("bool"), "--disable-prefill-cuda-graph": Flag("bool"),
    "--cuda-graph-backend-decode": Flag("str", GRAPH_BACKENDS),
    "--cuda-graph-backend-prefill": Flag("str", GRAPH_BACKENDS),
    "--cuda-graph-max-bs-decode": Flag("int"),
    "--attention-backend": Flag("str", ATTENTION),
    "--prefill-attention-backend": Flag("str", ATTENTION),
    "--decode-attention-backend": Flag("str", ATTENTION),
    "--trust-remote-code": Flag("bool"), "--enable-cache-report": Flag("bool"),
    "--sampling-defaults": Flag("str", _choices("openai model")),
    "--default-chat-template-kwargs": Flag("json"),
    "--stream-response-default-include-usage": Flag("bool"),
    "--allow-auto-truncate": Flag("bool"),
    "--decode-log-interval": Flag("int"), "--random-seed": Flag("int"),
    "--enable-memory-saver": Flag("bool"), "--sleep-on-idle": Flag("bool"),
    "--watchdog-timeout": Flag("float"), "--soft-watchdog-timeout": Flag("float"),
    "--dist-timeout": Flag("int"),
    "--uvicorn-access-log-exclude-prefixes": Flag("list"),
}

# Set by qwentui itself from [engine]; a second copy in extra_args/overrides would fight it.
MANAGED = {
    "--model-path": "engine.model", "--model": "engine.model", "--host": "engine.host",
    "--port": "engine.port", "--api-key": "engine.api_key",
    "--served-model-name": "engine.served_model_name",
    "--reasoning-parser": "qwentui (always qwen3)", "--enable-metrics": "qwentui (always on)",
    "--dp-size": "engine.gpus", "--data-parallel-size": "engine.gpus",
}

_HRINT = re.compile(r"\d+(\.\d+)?\s*([kKmMgG]i?)?")


def flag_name(arg: str) -> str:
    """'--port=1' → '--port'."""
    return arg.split("=", 1)[0]


def check_value(flag: str, value: Any, where: str) -> None:
    """Raise UsageError when `value` is not valid for a known `flag`; unknown flags pass."""
    spec = FLAGS.get(flag)
    if spec is None:
        return
    bad = _problem(spec, value)
    if bad:
        raise UsageError(f"{where}: {flag} {bad}")


def _problem(spec: Flag, value: Any) -> str | None:
    if spec.kind == "bool":
        return None if isinstance(value, bool) else f"is a switch: use true or false, got {value!r}"
    if spec.kind == "list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"takes a list of strings, got {value!r}"
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        return f"takes one value, got {value!r}"
    text = str(value)
    if spec.choices and text not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}; got {text!r}"
    if spec.kind == "int" and not re.fullmatch(r"-?\d+", text):
        return f"must be an integer, got {text!r}"
    if spec.kind == "hrint" and not _HRINT.fullmatch(text):
        return f"must be an integer like 32768 or 32k, got {text!r}"
    if spec.kind == "float":
        try:
            float(text)
        except ValueError:
            return f"must be a number, got {text!r}"
    if spec.kind == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return f"must be JSON, got {text!r}"
    return None


def render(flag: str, value: Any) -> list[str]:
    """argv words for one flag: true → ['--x'], false/None/'' → [], list → ['--x', a, b]."""
    if value is None or value is False or value == "":
        return []
    if value is True:
        return [flag]
    if isinstance(value, list):
        return [flag, *map(str, value)]
    if isinstance(value, float):
        return [flag, repr(value)]
    if isinstance(value, dict):
        return [flag, json.dumps(value)]
    return [flag, str(value)]
