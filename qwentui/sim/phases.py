"""Start-up phase lines (§8), paced by `--sim-cold-start`; the port stays closed meanwhile.

Shares of the cold start: weights 45 %, KV cache 10 %, CUDA graphs 30 %, warm-up 15 %
(the warm-up share runs after uvicorn binds, see launch.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from qwentui.sim.engine import GPU_TOTAL_GB, KV_BYTES_PER_TOKEN, Resources

log = logging.getLogger("sglang.sim")
WEIGHTS_SHARE, KV_SHARE, GRAPH_SHARE, WARMUP_SHARE = 0.45, 0.10, 0.30, 0.15
GRAPH_GB = 0.38


def _tqdm(text: str) -> None:
    """tqdm progress lines go straight to stderr, without SGLang's log prefix."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _graphs_disabled(a) -> bool:
    return a.disable_cuda_graph or a.disable_decode_cuda_graph or a.cuda_graph_backend_decode == "disabled"


def _batch_sizes(max_running: int) -> list[int]:
    sizes, bs = [1, 2, 4], 8
    while bs <= min(max_running, 256):
        sizes.append(bs)
        bs += 8 if bs < 64 else 16
    return [s for s in sizes if s <= max(max_running, 1)] or [1]


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _checkpoint(scheduler, name: str) -> None:
    """The scheduler child acknowledges each phase; with --sim-oom it fails here instead."""
    ok = await asyncio.get_running_loop().run_in_executor(None, scheduler.phase, name)
    if not ok:
        await asyncio.sleep(10)  # the child SIGQUITs us; our handler ends the process


async def load(a, res: Resources, scheduler) -> None:
    """Weights → KV cache → CUDA graphs → scheduler summary."""
    total = a.sim_cold_start
    avail = GPU_TOTAL_GB
    t_start = time.monotonic()
    log.info(f"Load weight begin. avail mem={avail:.2f} GB")
    await _checkpoint(scheduler, "weights")
    _tqdm("Loading safetensors checkpoint shards:   0% Completed | 0/2 [00:00<?, ?it/s]")
    await _sleep(total * WEIGHTS_SHARE / 2)
    _tqdm("Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:00<00:00,  1.95it/s]")
    await _sleep(total * WEIGHTS_SHARE / 2)
    _tqdm("Loading safetensors checkpoint shards: 100% Completed | 2/2 [00:01<00:00,  1.97it/s]")
    avail -= res.weight_gb
    t_weights = time.monotonic() - t_start
    log.info(f"Load weight end. elapsed={t_weights:.2f} s, type=Qwen3ForCausalLM, dtype=torch.bfloat16, "
             f"avail mem={avail:.2f} GB, mem usage={res.weight_gb:.2f} GB.")
    await _checkpoint(scheduler, "kv")
    half = res.max_total_tokens * KV_BYTES_PER_TOKEN / 2 / 1e9
    log.info(f"KV Cache is allocated. dtype: torch.bfloat16, #tokens: {res.max_total_tokens}, "
             f"K size: {half:.2f} GB, V size: {half:.2f} GB")
    avail -= res.kv_gb
    log.info(f"Memory pool end. avail mem={avail:.2f} GB")
    await _sleep(total * KV_SHARE)
    t_kv = total * KV_SHARE
    t_graph = 0.0
    if not _graphs_disabled(a):
        t_graph, avail = await _graphs(a, res, scheduler, avail)
    log.info(f"max_total_num_tokens={res.max_total_tokens}, chunked_prefill_size={res.chunked_prefill}, "
             f"max_prefill_tokens=16384, max_running_requests={res.max_running}, "
             f"context_len={res.context_len}, available_gpu_mem={avail:.2f} GB")
    log.info(f"Engine startup timings (s): load_weight={t_weights:.2f}, kv_cache_allocation={t_kv:.2f}, "
             f"scheduler_e2e={time.monotonic() - t_start:.2f}, cuda_graph={{'decode': {t_graph:.2f}}}, "
             f"tokenizer_e2e=0.41")


async def _graphs(a, res: Resources, scheduler, avail: float) -> tuple[float, float]:
    total = a.sim_cold_start
    t = time.monotonic()
    log.info(f"Capture target decode CUDA graph begin. backend=full, num_tokens_per_req=1, "
             f"avail mem={avail:.2f} GB")
    await _checkpoint(scheduler, "graph")
    sizes = _batch_sizes(res.max_running)
    _tqdm(f"Capturing batches (bs={sizes[-1]} avail_mem={avail:.2f} GB):   0%|          | 0/{len(sizes)} [00:00<?, ?it/s]")
    await _sleep(total * GRAPH_SHARE)
    _tqdm(f"Capturing batches (bs=1 avail_mem={avail - GRAPH_GB:.2f} GB): 100%|██████████| "
          f"{len(sizes)}/{len(sizes)} [00:01<00:00,  9.80it/s]")
    avail -= GRAPH_GB
    elapsed = time.monotonic() - t
    log.info(f"Capture target decode CUDA graph end. bs={sizes}, elapsed={elapsed:.2f} s, "
             f"mem usage={GRAPH_GB:.2f} GB, avail mem={avail:.2f} GB.")
    return elapsed, avail
