"""`qwentui gpu` (alias `top`): the telemetry snapshot as text or JSON, once or `--watch`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


ONE_SHOT_GAP = 0.5  # seconds between the two readings of a one-shot snapshot


def register(sub: argparse._SubParsersAction) -> None:
    from qwentui.commands import flags

    p = sub.add_parser("gpu", aliases=["top"], help="show GPU, engine metrics and host stats (once or --watch)",
                       description="One snapshot of what the GPU pane shows; --watch repeats it, "
                       "--json prints one JSON object per snapshot (NDJSON with --watch).")
    p.add_argument("--watch", nargs="?", const="", metavar="SECONDS",
                   help="repeat every SECONDS (default: telemetry.interval) until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    flags.add_engine_flags(p, subcommand=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from qwentui.commands import flags
    from qwentui.config import parse_duration

    cfg = flags.load_config(args)
    every = None
    if args.watch is not None:  # a bad value is a ConfigError: one line, exit 2
        every = parse_duration(args.watch, "--watch") if args.watch else cfg.telemetry.interval
    try:
        return asyncio.run(_main(cfg, getattr(args, "attach", None), every, args.json))
    except KeyboardInterrupt:
        return 0


def _target(cfg: Any, attach: str | None) -> tuple[str, int | None]:
    """(base URL, local port whose listener is the engine, if it is local)."""
    from urllib.parse import urlsplit

    from qwentui.config import is_loopback
    from qwentui.errors import UsageError

    if attach:
        url = attach if "://" in attach else f"http://{attach}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--attach must be a URL like http://127.0.0.1:30000, got {attach!r}")
        local = is_loopback(parts.hostname)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return url.rstrip("/"), port if local else None
    from qwentui.telemetry.sampler import local_base_url

    return local_base_url(cfg.engine.host, cfg.engine.port), cfg.engine.port


async def _main(cfg: Any, attach: str | None, every: float | None, as_json: bool) -> int:
    import asyncio

    from qwentui.telemetry.host import listener_pid, process_tree
    from qwentui.telemetry.sampler import Sampler

    url, port = _target(cfg, attach)
    pid_cache: dict[str, int | None] = {}

    def engine_pids() -> list[int]:
        if port is None:
            return []
        pid = pid_cache.get("pid")
        tree = process_tree(pid) if pid else []
        if not tree:
            pid_cache["pid"] = pid = listener_pid(port)
            tree = process_tree(pid) if pid else []
        return tree

    sampler = Sampler.from_config(cfg, base_url=url, engine_pids=engine_pids, history=2)
    try:
        if every is None:  # rates and CPU% need two readings: take a short first one
            await sampler.sample_once()
            await asyncio.sleep(ONE_SHOT_GAP)
        while True:
            start = time.monotonic()
            snap = await sampler.sample_once()
            _emit(snap, url, as_json, clear=every is not None and not as_json and sys.stdout.isatty())
            if every is None:
                return 0
            await asyncio.sleep(max(0.0, every - (time.monotonic() - start)))
    finally:
        await sampler.aclose()


def _emit(snap: Any, url: str, as_json: bool, clear: bool) -> None:
    import json

    if as_json:
        print(json.dumps(snap.to_dict()), flush=True)
        return
    if clear:
        sys.stdout.write("\x1b[H\x1b[2J")
    print("\n".join(render(snap, url)), flush=True)


# -- text ------------------------------------------------------------------------------

def human_bytes(n: Any) -> str:
    from qwentui.telemetry.na import NA

    if n is NA or n is None:
        return "n/a"
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _pct(value: Any, scale: float = 1.0) -> str:
    from qwentui.telemetry.na import NA

    return "n/a" if value is NA else f"{value * scale:.0f}%"


def _num(value: Any, fmt: str, unit: str = "") -> str:
    from qwentui.telemetry.na import NA

    return "n/a" if value is NA else f"{value:{fmt}}{unit}"


def _uptime(boot: Any, now: float) -> str:
    from qwentui.telemetry.na import NA

    if boot is NA:
        return "n/a"
    minutes = int(max(0.0, now - boot) // 60)
    days, rest = divmod(minutes, 1440)
    return (f"{days}d" if days else "") + f"{rest // 60}h{rest % 60:02d}m"


def render(snap: Any, url: str) -> list[str]:
    """The snapshot as a few aligned lines (no colour: scripts and pipes read it)."""
    return [*_gpu_lines(snap), *_engine_lines(snap, url), _host_line(snap)]


def _gpu_lines(snap: Any) -> list[str]:
    gpu = snap.gpu
    if gpu.status != "ok" or not gpu.gpus:
        if snap.simulated and gpu.status in ("no-nvml", "no-gpu"):
            return ["GPU     no GPU detected (simulated engine)"]
        label = "NVML unavailable" if gpu.status == "no-nvml" else "no GPU detected" \
            if gpu.status == "no-gpu" else "NVML error"
        return [f"GPU     {label}: {gpu.message}"]
    lines = []
    for g in gpu.gpus:
        lines.append(f"GPU {g.index}   {g.name} [{g.gpu_class}]  driver {gpu.driver_version}")
        if g.status != "ok":
            lines.append(f"  GPU lost: {g.message}" if g.status == "lost" else f"  error: {g.message}")
            continue
        power = f"{_num(g.power_mw / 1000, '.0f')} / {_num(g.power_limit_mw / 1000, '.0f')} W"
        lines.append(f"  util {_pct(g.util_gpu_pct):>4}  mem-util {_pct(g.util_mem_pct):>4}  "
                     f"{_num(g.temperature_c, 'd', ' °C')}  {power}  SM {_num(g.clock_sm_mhz, 'd', ' MHz')}")
        lines.append(f"  VRAM {human_bytes(g.memory_used_bytes)} / {human_bytes(g.memory_total_bytes)}  "
                     f"engine {human_bytes(g.engine_memory_bytes)} ({g.engine_memory_source})  "
                     f"other {human_bytes(g.other_memory_bytes)}")
    return lines


def _engine_lines(snap: Any, url: str) -> list[str]:
    e = snap.engine
    head = f"engine  {url}" + ("  [SIMULATED]" if snap.simulated else "")
    if not e.available:
        return [f"{head}  metrics unavailable: {e.error}"]
    return [
        head,
        f"  running {_num(e.running, '.0f')}  queued {_num(e.queued, '.0f')}  KV cache {_pct(e.token_usage, 100)}  "
        f"{_num(snap.tokens_per_s, '.0f')} tok/s  prefix hit {_pct(e.cache_hit_rate, 100)}",
        f"  TTFT p50 {_num(e.ttft_p50_s, '.2f', ' s')}  p95 {_num(e.ttft_p95_s, '.2f', ' s')}  "
        f"e2e p50 {_num(e.e2e_p50_s, '.2f', ' s')}  p95 {_num(e.e2e_p95_s, '.2f', ' s')}  "
        f"requests {_num(e.requests_total, '.0f')}",
    ]


def _host_line(snap: Any) -> str:
    h = snap.host
    engine = (f"  engine cpu {_num(h.engine_cpu_pct, '.0f', '%')} rss {human_bytes(h.engine_rss)}"
              if h.engine_procs else "")
    return (f"host    cpu {_num(h.cpu_pct, '.0f', '%')}  RAM {human_bytes(h.mem_used)} / {human_bytes(h.mem_total)}"
            f"{engine}  up {_uptime(h.boot_time, snap.at)}")
