"""The `sglang::scheduler` child process of the simulator.

Like SGLang's scheduler it names itself, dies with its parent (PR_SET_PDEATHSIG=SIGKILL) and,
on a fatal error, logs `Scheduler hit an exception` and SIGQUITs the parent. It answers the
parent's start-up phase markers over a pipe ("ok"), which is where `--sim-oom` fails, and
`--sim-crash-after` makes it crash at a deadline. Imports stay minimal: it starts fast.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time

PR_SET_NAME, PR_SET_PDEATHSIG = 15, 1
_TRACE = (
    "Traceback (most recent call last):\n"
    '  File "sglang/srt/managers/scheduler.py", line 3104, in run_scheduler_process\n'
    "    {call}\n"
    "{error}\n"
)
OOM_KV = ("scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)",
          "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. "
          "Current value: mem_fraction_static={frac}")
OOM_GRAPH = ("scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)",
             "Exception: Capture cuda graph failed: CUDA out of memory. Tried to allocate 2.00 GiB. "
             "(simulated by --sim-oom)\n"
             "Possible solutions:\n"
             "1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)\n"
             "2. set --cuda-graph-max-bs-decode to a smaller value (e.g., 16)\n"
             "3. disable decode CUDA graph by --cuda-graph-backend-decode=disabled.\n"
             "Open an issue on GitHub https://github.com/sgl-project/sglang/issues/new/choose")
CRASH = ("scheduler.event_loop_overlap()",
         "RuntimeError: CUDA error: an illegal memory access was encountered (simulated by --sim-crash-after)")


def _prctl(option: int, value) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def set_title(title: str) -> None:
    _prctl(PR_SET_NAME, ctypes.c_char_p(title.encode()[:15]))


def die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def fail(parent: int, call: str, error: str) -> None:
    """Scheduler exception path: log the traceback, SIGQUIT the parent, exit."""
    log("Scheduler hit an exception: " + _TRACE.format(call=call, error=error))
    try:
        os.kill(parent, signal.SIGQUIT)
    except ProcessLookupError:
        pass
    time.sleep(5)  # the parent's SIGQUIT handler kills the tree, us included
    os._exit(1)


def serve(parent: int, oom: str, frac: float, crash_at: float | None, exit_s: float = 1.0) -> None:
    """Answer phase markers on stdin until EOF; crash at `crash_at` (monotonic) if set.

    "shutdown" is SGLang's ShutdownReq: free GPU memory (takes `exit_s`), then exit."""
    while True:
        timeout = None if crash_at is None else max(crash_at - time.monotonic(), 0)
        readable, _, _ = select.select([sys.stdin], [], [], timeout)
        if not readable:
            fail(parent, *CRASH)
        line = sys.stdin.readline()
        if not line:
            return  # parent closed the pipe: shutting down
        phase = line.strip()
        if phase == "shutdown":
            time.sleep(exit_s)
            return
        if oom and phase == oom:
            call, error = OOM_KV if oom == "kv" else OOM_GRAPH
            fail(parent, call, error.format(frac=frac))
        sys.stdout.write("ok\n")
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    """argv: TITLE PARENT_PID OOM(kv|graph|-) MEM_FRACTION CRASH_AFTER_S(or -) [EXIT_S]."""
    title, parent, oom, frac, crash = argv[:5]
    exit_s = float(argv[5]) if len(argv) > 5 else 1.0
    set_title(title)
    die_with_parent()
    if os.getppid() != int(parent):  # the parent died before PDEATHSIG was armed
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's business
    crash_at = None if crash == "-" else time.monotonic() + float(crash)
    serve(int(parent), "" if oom == "-" else oom, float(frac), crash_at, exit_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
