"""`GET /v1/loads`: SGLang's per-DP-rank load snapshot, which the model gateway `smg` polls.

smg's load monitor asks `/v1/loads?include=core,disagg,queues,memory` first and falls back to
the `/metrics` gauges; its `SchedulerLoadSnapshot` (crates/protocols/src/worker.rs) names the
fields. The simulator has one scheduler, so one rank (dp_rank 0); sections other than `core`
are omitted, which smg reads as "not reported".
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def snapshot(engine, dp_rank: int = 0) -> dict:
    """One rank's core numbers from the simulated engine, in SGLang's field names."""
    res = engine.res
    used = engine.used_tokens()
    usage = round(used / res.max_total_tokens, 4) if res.max_total_tokens else 0.0
    return {
        "dp_rank": dp_rank, "num_running_reqs": engine.running, "num_waiting_reqs": engine.queued,
        "num_total_reqs": engine.running + engine.queued, "num_used_tokens": used,
        "max_total_num_tokens": res.max_total_tokens, "token_usage": usage,
        "gen_throughput": engine.gen_throughput(), "cache_hit_rate": 0.0,
        "utilization": 1.0 if engine.running else 0.0, "max_running_requests": res.max_running,
    }


def body(engine) -> dict:
    stamp = datetime.fromtimestamp(time.time(), tz=timezone.utc).isoformat()
    return {"timestamp": stamp, "dp_rank_count": 1, "loads": [snapshot(engine)]}


async def loads(request: Request) -> Response:
    state = request.app.state.sim
    if not state.up:
        return Response(status_code=503)
    return JSONResponse(body(state.engine))
