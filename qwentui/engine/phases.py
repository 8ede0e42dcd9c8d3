"""Start-up phases from SGLang's real log lines (contracts/sglang.md §8).

Phases only move forward: a stray late line (a second "Capture ... begin") never sends
the display back.
"""

from __future__ import annotations

import re

LAUNCHING = "launching"
LOADING = "loading weights"
KV_CACHE = "allocating KV cache"
CUDA_GRAPHS = "capturing CUDA graphs"
WARMING = "warming up"
READY = "ready"
PHASES = (LAUNCHING, LOADING, KV_CACHE, CUDA_GRAPHS, WARMING, READY)

_MARKERS = (
    (re.compile(r"Load weight begin|Loading safetensors checkpoint shards"), LOADING),
    (re.compile(r"KV Cache is allocated|Memory pool end"), KV_CACHE),
    (re.compile(r"Capture .*CUDA graph begin|Capturing batches", re.I), CUDA_GRAPHS),
    (re.compile(r"Uvicorn running on"), WARMING),
    (re.compile(r"The server is fired up and ready to roll"), READY),
)
READY_LINE = re.compile(r"The server is fired up and ready to roll")


def phase_of(line: str) -> str | None:
    """The phase a log line announces, or None for any other line."""
    for pattern, phase in _MARKERS:
        if pattern.search(line):
            return phase
    return None


def advance(current: str, line: str) -> str:
    """`current` moved forward by `line` (never backward)."""
    found = phase_of(line)
    if found is None:
        return current
    rank = PHASES.index(current) if current in PHASES else 0
    return found if PHASES.index(found) > rank else current


def is_ready_line(line: str) -> bool:
    return bool(READY_LINE.search(line))
