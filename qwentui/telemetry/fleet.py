"""The fleet as numbers: each worker's `/metrics` plus what the gateway (`smg`) says about it.

One row per worker: running, queued, KV %, tok/s from the worker's own SGLang metrics, and
up/down as the gateway sees it (`smg_worker_health{worker=URL}` on smg's Prometheus
listener; 1 healthy, 0 not). The gateway's own counters (requests routed, upstream errors,
retries) come from the same scrape. Nothing here raises: a worker that does not answer is
a row with `reachable=False` and its error.

Cost per worker: a remote worker's price and idle countdown would come from that box's
guard status API, which is local-only (a Unix socket) today, so every remote row says
"cost unknown".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from qwentui.telemetry import metrics
from qwentui.telemetry.na import NA, Maybe

COST_UNKNOWN = "cost unknown"


@dataclass(frozen=True)
class GatewayCounters:
    """smg's view: per-worker health and circuit state, and its routing totals."""

    available: bool
    error: str = ""
    health: dict[str, bool] = field(default_factory=dict)  # worker URL → healthy
    circuit_open: dict[str, bool] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)  # requests the gateway has at each worker
    requests_total: float = 0.0  # requests routed (smg_router_requests_total)
    upstream_errors_total: float = 0.0  # upstream answers that were not 2xx
    retries_total: float = 0.0


@dataclass(frozen=True)
class WorkerRow:
    url: str
    reachable: bool
    gateway_up: bool | None  # None: the gateway's metrics were not available
    running: Maybe[float] = NA
    queued: Maybe[float] = NA
    kv_pct: Maybe[float] = NA
    tokens_per_s: Maybe[float] = NA
    in_flight: Maybe[float] = NA
    model: str = ""
    error: str = ""
    cost: str = COST_UNKNOWN
    prompt_tokens_total: Maybe[float] = NA  # the worker's own counters, for the ledger
    generation_tokens_total: Maybe[float] = NA
    requests_total: Maybe[float] = NA

    @property
    def up(self) -> bool:
        """Up only when the gateway routes to it (when it can tell) and it answers us."""
        return self.reachable and self.gateway_up is not False


@dataclass(frozen=True)
class FleetSnapshot:
    at: float
    gateway_url: str
    rows: tuple[WorkerRow, ...]
    gateway: GatewayCounters

    @property
    def up_count(self) -> int:
        return sum(1 for r in self.rows if r.up)


def parse_gateway(text: str) -> GatewayCounters:
    """smg 1.13's Prometheus text → counters (names from model_gateway/src/observability)."""
    health, circuit, in_flight = {}, {}, {}
    routed = errors = retries = 0.0
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        return GatewayCounters(False, f"not Prometheus text: {exc}")
    for family in families:
        for s in family.samples:
            worker = s.labels.get("worker", "")
            if s.name == "smg_worker_health" and worker:
                health[worker] = s.value >= 1  # 1 healthy, 0 unhealthy, -1 removed from the pool
            elif s.name == "smg_worker_cb_state" and worker:
                circuit[worker] = s.value == 1  # 0 closed, 1 open, 2 half-open, -1 removed
            elif s.name == "smg_worker_requests_active" and worker:
                in_flight[worker] = s.value
            elif s.name == "smg_router_requests_total":
                routed += s.value
            elif s.name == "smg_router_upstream_responses_total" and not s.labels.get("status_code", "").startswith("2"):
                errors += s.value
            elif s.name == "smg_worker_retries_total":
                retries += s.value
    return GatewayCounters(True, "", health, circuit, in_flight, routed, errors, retries)


async def scrape_gateway(client: httpx.AsyncClient, metrics_url: str, timeout: float = 2.0) -> GatewayCounters:
    try:
        response = await asyncio.wait_for(client.get(metrics_url), timeout)
    except Exception as exc:  # noqa: BLE001 - any transport failure is "unavailable"
        return GatewayCounters(False, f"gateway metrics: {type(exc).__name__}")
    if response.status_code != 200:
        return GatewayCounters(False, f"gateway metrics: HTTP {response.status_code}")
    return parse_gateway(response.text)


def row(url: str, m: metrics.EngineMetrics, gw: GatewayCounters, cost: str = COST_UNKNOWN) -> WorkerRow:
    gateway_up = gw.health.get(url) if gw.available else None
    if not m.available:
        return WorkerRow(url, False, gateway_up, error=m.error, in_flight=gw.in_flight.get(url, NA), cost=cost)
    kv = m.token_usage * 100 if m.token_usage is not NA else NA
    return WorkerRow(url, True, gateway_up, m.running, m.queued, kv, m.gen_throughput,
                     gw.in_flight.get(url, NA), m.model_name, cost=cost,
                     prompt_tokens_total=m.prompt_tokens_total, generation_tokens_total=m.generation_tokens_total,
                     requests_total=m.requests_total)


def cost_label(price: float | None, currency_symbol: str = "") -> str:
    """A configured box price (fleet.prices); the idle countdown stays unknown without its guard."""
    if price is None:
        return COST_UNKNOWN
    return f"{currency_symbol}{price:g}/h (fleet.prices); idle unknown"


class FleetSampler:
    """Polls every worker and the gateway; `sample()` returns one FleetSnapshot."""

    def __init__(self, gateway_url: str, metrics_url: str, workers: Sequence[str], *, api_key: str = "",
                 timeout: float = 1.5, clock: Callable[[], float] = time.time,
                 costs: dict[str, str] | None = None) -> None:
        self.gateway_url, self.metrics_url, self.workers = gateway_url, metrics_url, list(workers)
        self.costs = costs or {}
        self.timeout, self._clock = timeout, clock
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, trust_env=False)

    async def sample(self) -> FleetSnapshot:
        gw, *scrapes = await asyncio.gather(
            scrape_gateway(self._client, self.metrics_url, self.timeout),
            *(metrics.scrape(self._client, url, timeout=self.timeout, histograms=False) for url in self.workers))
        rows = tuple(row(url, m, gw, self.costs.get(url, COST_UNKNOWN)) for url, m in zip(self.workers, scrapes))
        return FleetSnapshot(self._clock(), self.gateway_url, rows, gw)

    async def aclose(self) -> None:
        await self._client.aclose()
