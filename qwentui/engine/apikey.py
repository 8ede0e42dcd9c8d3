"""API key for an engine reachable from outside: generated once, stored 0600, reused."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from qwentui.config import EngineConfig, is_loopback
from qwentui.errors import QwentuiError


def key_path() -> Path:
    from qwentui import paths

    return paths.state_dir() / "api_key"


def resolve(engine: EngineConfig, *, create: bool = True, host: str | None = None) -> str:
    """The key clients must send: configured > stored > generated (non-loopback host only).

    A loopback-only engine gets no key unless one is configured: nobody else can reach it.
    `host` is where the engine really listens (read from its final argv), when known.
    """
    if engine.api_key:
        return engine.api_key
    if is_loopback(engine.host if host is None else host):
        return ""
    path = key_path()
    stored = _read(path)
    if stored or not create:
        return stored
    from qwentui import paths

    key = "qwt-" + secrets.token_urlsafe(32)
    try:
        paths.write_private(path, key + "\n")
    except OSError as exc:  # a key nobody can read back later must not be used
        raise QwentuiError(f"cannot store the generated API key at {path} ({exc.strerror or exc}): "
                           "set engine.api_key (or QWENTUI_ENGINE_API_KEY), or make that directory "
                           "writable") from None
    return key


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""
    except OSError as exc:
        raise QwentuiError(f"cannot read the stored API key at {path} ({exc.strerror or exc}): "
                           "set engine.api_key (or QWENTUI_ENGINE_API_KEY), or fix that file") from None
    if text and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it; a key must stay private
    return text
