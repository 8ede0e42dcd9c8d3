"""What the simulator's handlers share (no HTTP stack here, so handlers and server import it)."""

from __future__ import annotations

import logging
import time
from argparse import Namespace

from qwentui.sim import metrics, protocol
from qwentui.sim.engine import Engine, Resources

log = logging.getLogger("sglang.sim")


class SimState:
    """Everything the handlers share: flags, resources, engine, metrics and lifecycle flags."""

    def __init__(self, args: Namespace, res: Resources, engine: Engine, sim_metrics: metrics.SimMetrics) -> None:
        self.args, self.res, self.engine, self.metrics = args, res, engine, sim_metrics
        self.up = False  # warm-up finished (ServerStatus.Up)
        self.draining = False  # SIGTERM received
        self.unhealthy = False  # ServerStatus.UnHealthy: a health generation failed
        self.paused = False
        self.started_at = time.time()

    def fit_context(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """Context checks (or auto-truncation); returns the effective max new tokens."""
        ctx = self.res.context_len
        if self.args.allow_auto_truncate and prompt_tokens + (max_tokens or 0) >= ctx:
            log.warning(f"Request length is longer than the KV cache pool size or the max context length. "
                        f"Truncated. len(input_ids)={prompt_tokens}, max_new_tokens={max_tokens}.")
            prompt_tokens = max(ctx - (max_tokens or 1) - 1, 1)
        protocol.check_context(prompt_tokens, max_tokens, ctx, self.args.context_length_explicit)
        return max_tokens if max_tokens is not None else ctx - prompt_tokens

    def log_request(self, kind: str, rid: str, p) -> None:
        if self.args.log_level.lower() == "debug":
            log.debug(f"Receive: obj={kind} rid={rid} stream={p.stream} max_tokens={p.max_tokens}")
