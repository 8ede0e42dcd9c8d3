"""`qwentui batch INPUT.jsonl -o OUT.jsonl`: offline requests at full throughput, then stop paying."""

from __future__ import annotations

import argparse
import math

from qwentui.errors import UsageError

EPILOG = """\
input lines:  {"id": 1, "prompt": "..."}  or  {"id": "a", "messages": [{"role": "user", "content": "..."}]}
              optional per line: system, max_tokens, temperature, top_p, top_k, min_p, seed, stop,
              presence_penalty, frequency_penalty, repetition_penalty, thinking (true/false)
output lines: {"id", "content", "reasoning", "usage", "latency_ms", "finish_reason", "cached"}
              or {"id", "line", "error", "retryable"}; one per input line, in finishing order
examples:
  qwentui batch prompts.jsonl -o answers.jsonl --concurrency 16 --then poweroff
  qwentui --demo batch prompts.jsonl -o answers.jsonl      # against the simulator
  qwentui batch prompts.jsonl -o answers.jsonl --resume    # after Ctrl+C, a crash or failures
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="run a JSONL file of prompts concurrently, then stop the engine",
                       description="Send every line of INPUT to the engine with bounded concurrency and\n"
                       "write one JSON line per input to OUT as answers finish. Starts the engine if\n"
                       "none is running and stops it afterwards (like `job && shutdown -h now`).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT.jsonl", help="requests, one JSON object per line")
    p.add_argument("-o", "--output", metavar="OUT.jsonl", required=True, help="where results go")
    p.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests in flight (default 8)")
    p.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=None,
                   help="Qwen3 thinking mode (default from config chat.thinking); a line's "
                   '"thinking" wins')
    p.add_argument("--max-tokens", type=int, metavar="N", help="max_tokens per answer (default chat.max_tokens)")
    p.add_argument("--then", choices=("keep", "stop", "poweroff"), default=None,
                   help="after the batch: stop the engine qwentui started (default), keep it, or stop "
                   "it and run idle.poweroff_command")
    p.add_argument("--resume", action="store_true", help="skip ids already answered in OUT; redo failed ones")
    p.add_argument("--overwrite", action="store_true", help="start OUT over even if it has results")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="answer repeated requests from the prompt cache (default cache.enabled)")
    p.add_argument("--retries", type=int, default=3, metavar="N",
                   help="retries of a request after connection errors, 5xx and timeouts (default 3)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for one whole answer (default 600)")
    p.add_argument("--dry-run", action="store_true", help="with --then poweroff: print the command instead")
    from qwentui.commands import flags

    flags.add_engine_flags(p, subcommand=True)  # --demo/--engine/--attach/--port here too
    p.add_argument("--keep-engine", action="store_true", default=argparse.SUPPRESS, help="same as --then keep")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.concurrency <= 1024:
        raise UsageError(f"--concurrency must be 1-1024, got {args.concurrency}")
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise UsageError(f"--max-tokens must be greater than zero, got {args.max_tokens}")
    if not 0 <= args.retries <= 20:
        raise UsageError(f"--retries must be 0-20, got {args.retries}")
    if not (0 < args.timeout < math.inf):
        raise UsageError(f"--timeout must be a finite number of seconds greater than zero, got {args.timeout:g}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    check_open_files(args.concurrency)


FD_RESERVE = 64  # ledger, engine log and pipe, cache, TLS, output: what a batch holds besides sockets


def check_open_files(concurrency: int) -> None:
    """Every request in flight holds a socket. Raise the soft RLIMIT_NOFILE toward the hard
    one when it is too low (as SGLang does for itself); if it still is, refuse now rather
    than fail mid-run with EMFILE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = _open_fds() + FD_RESERVE
    need = concurrency + base
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(hard, need)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft < need:
        raise UsageError(f"--concurrency {concurrency} needs about {need} open files but this process may "
                         f"open {soft} (ulimit -n): use --concurrency {max(1, soft - base)} or less, or raise "
                         "the limit")


def _open_fds() -> int:
    import os

    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def options(args: argparse.Namespace, cfg):
    from pathlib import Path

    from qwentui.batch.job import JobOptions

    _check(args)
    then = args.then or ("keep" if getattr(args, "keep_engine", False) else "stop")
    return JobOptions(
        input=Path(args.input), output=Path(args.output), concurrency=args.concurrency,
        thinking=cfg.chat.thinking if args.thinking is None else args.thinking,
        max_tokens=args.max_tokens or cfg.chat.max_tokens, then=then, attach=getattr(args, "attach", None),
        resume=args.resume, overwrite=args.overwrite,
        cache=cfg.cache.enabled if args.cache is None else args.cache,
        dry_run=args.dry_run, retries=args.retries, timeout=args.timeout)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from qwentui.commands import flags
    from qwentui.batch.job import BatchJob

    cfg = flags.load_config(args)
    job = BatchJob(cfg, options(args, cfg))
    return asyncio.run(job.run())
