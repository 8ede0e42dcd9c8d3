"""`engine.gpus = 1 | N | "all"`: one SGLang server with `--dp-size N` on a multi-GPU box.

Why data parallelism and not tensor parallelism: Qwen3-1.7B (~3.4 GB of bf16 weights) fits
on every supported GPU many times over. `--tp-size N` would split each layer across the GPUs
and add an all-reduce per layer per token; rented multi-T4/L4 boxes talk over PCIe, not
NVLink, so that traffic costs more than the small matmuls it splits. `--dp-size N` (without
`--enable-dp-attention`, which is for MoE models) runs N full replicas, one per GPU, each with
its own KV pool, behind SGLang's own data-parallel controller: about N× the throughput, and
one process tree for qwentui to supervise. SGLang 0.5.23 puts dp_size × tp_size GPUs to work
(GPU ids from --base-gpu-id) and adds a `dp_rank` label to the scheduler metrics, which the
telemetry already sums across.

Replicas on different GPU models would run at different speeds and fit different KV pools,
so dp over a mixed box is refused.
"""

from __future__ import annotations

from typing import Any

from qwentui.errors import UsageError

ALL = "all"


def mixed_models(names: list[str]) -> list[str]:
    """The distinct GPU models when a box has more than one, else []."""
    distinct = sorted(set(names))
    return distinct if len(distinct) > 1 else []


def resolve(setting: int | str, names: list[str] | None) -> int:
    """How many GPUs the engine uses, checked against the GPU names NVML reports.

    `names` None means "no inventory" (simulator, dry runs): "all" is then 1 and N is trusted.
    """
    if names is None:
        return 1 if setting == ALL else int(setting)
    present = len(names)
    wanted = present if setting == ALL else int(setting)
    if present == 0:
        if wanted > 1 or setting == ALL:
            raise UsageError(f"engine.gpus = {setting!r} but NVML sees no GPU on this box")
        return 1
    if wanted > present:
        raise UsageError(f"engine.gpus = {wanted} but this box has {present} GPU{'s' if present > 1 else ''} "
                         f"({', '.join(names)}); set engine.gpus = {present} or \"all\"")
    mixed = mixed_models(names[:wanted])
    if wanted > 1 and mixed:
        raise UsageError(f"refusing --dp-size {wanted} over mixed GPU models ({', '.join(mixed)}): replicas "
                         "would differ in speed and KV size; set engine.gpus = 1 or use identical GPUs")
    return wanted


def dp_argv(count: int) -> list[str]:
    return ["--dp-size", str(count)] if count > 1 else []


def inventory_names(probe: Any = None) -> list[str] | None:
    """GPU names from NVML, or None when NVML is unavailable."""
    from qwentui.telemetry import nvml

    report = (probe or nvml.probe)()
    if report.status not in ("ok", "no-gpu"):
        return None
    return [g.name for g in report.gpus]
