"""Known engine failures → a cause and a fix, from the log tail and the exit status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    hint: str


_OOM_HINT = ("lower --mem-fraction-static (e.g. 0.7), --context-length or --max-running-requests "
             "in engine.overrides, or free GPU memory other processes hold (nvidia-smi)")

# First match wins, so specific causes come before generic ones.
_RULES: tuple[tuple[re.Pattern, str, str], ...] = (
    (re.compile(r"No module named '?sglang\b"), "SGLang is not installed for the engine's Python",
     "pip install 'qwentui[sglang]' in this environment, or set engine.python to a Python that has "
     "SGLang (see engine/README.md)"),
    (re.compile(r"No module named '?([\w.]+)"), "the engine's Python is missing a module",
     "reinstall SGLang there: pip install -r engine/requirements-sglang.txt"),
    (re.compile(r"\[Errno 98\]|[Aa]ddress already in use"), "the port was taken while the engine started",
     "choose another engine.port / --port, stop whatever holds it, or use --attach URL"),
    (re.compile(r"Not enough memory\. Please try to increase --mem-fraction-static"),
     "GPU out of memory: no room left for the KV cache after the weights",
     "raise --mem-fraction-static in engine.overrides (e.g. 0.8) if the card is yours alone, "
     "or lower --context-length; free GPU memory other processes hold (nvidia-smi)"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError|Capture cuda graph failed", re.I),
     "GPU out of memory", _OOM_HINT),
    (re.compile(r"died during initialization \(exit code: -9\)|Killed process|oom-kill", re.I),
     "host out of RAM: the OS OOM killer stopped the engine",
     "free host memory or use a box with more RAM"),
    (re.compile(r"couldn't connect to 'https://huggingface\.co'|LocalEntryNotFoundError|"
                r"Cannot find any model weights|Repository ?Not ?Found|GatedRepoError|"
                r"is not a local folder and is not a valid model identifier|"
                r"Temporary failure in name resolution|offline mode is enabled", re.I),
     "model weights are not available locally and the Hugging Face hub cannot be reached",
     "download them while online (huggingface-cli download Qwen/Qwen3-1.7B), set engine.model to a "
     "local directory, or set HF_ENDPOINT to a reachable mirror"),
    (re.compile(r"SGLang only supports sm75 and above"), "this GPU is too old for SGLang (needs sm75, T4 or newer)",
     "use a T4 or newer GPU, or try the simulator with --demo"),
    (re.compile(r"bfloat16 is only supported|does not support bfloat16|bf16 is not supported", re.I),
     "this GPU has no bfloat16", "use --preset t4 or set engine.overrides {'--dtype' = 'float16'}"),
    # srt/layers/attention/attention_registry.py: "FlashAttention v3 Backend requires SM>=80 and
    # SM<=90. Please use `--attention-backend flashinfer`." (backticks in the real message)
    (re.compile(r"FlashAttention v3 Backend requires SM"), "FlashAttention-3 does not run on this GPU",
     "set engine.overrides {'--attention-backend' = 'flashinfer'} (or pick the matching --preset)"),
    (re.compile(r"is not supported in the \w+ attention backend\. Please use `?--attention-backend (\w+)"),
     "the chosen attention backend cannot run this model",
     "set engine.overrides {'--attention-backend' = 'flashinfer'}"),
    (re.compile(r"no CUDA GPUs are available|Found no NVIDIA driver|CUDA driver version is insufficient|"
                r"NVIDIA driver on your system is too old", re.I),
     "no usable GPU or NVIDIA driver", "check nvidia-smi; on a box without a GPU use --demo"),
    (re.compile(r"error: (unrecognized arguments|argument --|the following arguments are required)"),
     "SGLang rejected a launch flag",
     "fix engine.extra_args / engine.overrides (`sglang serve --help` lists the flags)"),
    # A scheduler exception makes SGLang SIGQUIT itself and kill its own tree with SIGKILL
    # (srt/managers/scheduler.py, srt/utils/common.py: kill_process_tree), so exit -9 does
    # not mean the OOM killer here: name the real error.
    (re.compile(r"CUDA error: an illegal memory access was encountered"),
     "the scheduler crashed: CUDA error: an illegal memory access was encountered (a GPU fault, not the "
     "OOM killer)",
     "restart the engine (F5); if it recurs, try engine.overrides {'--cuda-graph-backend-decode' = 'disabled'} "
     "or another '--attention-backend', and report it to SGLang with the engine log"),
    (re.compile(r"Scheduler hit an exception|Subprocess \w+ \(pid=\d+\) crashed with exit code|"
                r"SIGQUIT received\..*one child failed|Received sigquit from a child process"),
     "an SGLang child process (scheduler) failed and SGLang shut itself down",
     "read the traceback in the engine log (F6); restart the engine (F5)"),
)


def diagnose(lines: Iterable[str], exit_code: int | None = None) -> Diagnosis | None:
    """The first known failure found in `lines` (recent log), else one from the exit status."""
    text = list(lines)[-400:]
    for pattern, cause, hint in _RULES:
        for line in text:
            match = pattern.search(line)
            if match:
                if "missing a module" in cause and match.groups():
                    cause = f"{cause} ({match.group(1)})"
                return Diagnosis(cause, hint)
    if exit_code in (-9, 137):
        return Diagnosis("the engine was killed with SIGKILL (often the OOM killer)",
                         "check host and GPU memory (dmesg, nvidia-smi)")
    return None
