"""SGLang's log format: `[YYYY-MM-DD HH:MM:SS] message` on stderr, no level name (§8).

uvicorn's lines get SGLang's `set_uvicorn_logging_configs` format: `[ts] INFO:     msg` on
stderr and access lines on stdout.
"""

from __future__ import annotations

import copy
import logging
import sys

DATEFMT = "%Y-%m-%d %H:%M:%S"


def level_of(name: str | None, default: int = logging.INFO) -> int:
    value = getattr(logging, (name or "").upper(), None)
    return value if isinstance(value, int) else default


def configure(log_level: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt=DATEFMT))
    logger = logging.getLogger("sglang")
    logger.handlers[:] = [handler]
    logger.setLevel(level_of(log_level))
    logger.propagate = False
    try:
        sys.stdout.reconfigure(line_buffering=True)  # access lines reach a piped log promptly
    except AttributeError:
        pass
    return logger


class _ExcludePrefixes(logging.Filter):
    def __init__(self, prefixes: list[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if self.prefixes and isinstance(args, tuple) and len(args) >= 3:
            path = str(args[2]).split("?", 1)[0]
            return not path.startswith(self.prefixes)
        return True


def uvicorn_config(exclude_prefixes: list[str]) -> dict:
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["formatters"]["default"].update(fmt="[%(asctime)s] %(levelprefix)s %(message)s", datefmt=DATEFMT,
                                        use_colors=False)
    cfg["formatters"]["access"].update(
        fmt='[%(asctime)s] %(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        datefmt=DATEFMT, use_colors=False)
    if exclude_prefixes:
        cfg.setdefault("filters", {})["exclude"] = {"()": _ExcludePrefixes, "prefixes": exclude_prefixes}
        cfg["handlers"]["access"]["filters"] = ["exclude"]
    return cfg
