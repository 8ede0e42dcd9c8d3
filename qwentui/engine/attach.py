"""Attach mode: use a server someone else started; find its model, never stop it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qwentui.errors import QwentuiError, UsageError

if TYPE_CHECKING:  # imported where used: not on the console's path to its first frame
    import httpx


@dataclass(frozen=True)
class Found:
    liveness_path: str  # "/ready" on SGLang; "/v1/models" on servers without it
    model: str
    simulated: bool


def normalize_url(url: str) -> str:
    """'http://h:1/v1/' → 'http://h:1'; anything but an http(s) URL with a host → UsageError."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. 'http://[::1' (an unclosed IPv6 bracket)
        raise UsageError(f"--attach needs an http(s) URL like http://127.0.0.1:30000, got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--attach needs an http(s) URL like http://127.0.0.1:30000, got {url!r}")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"--attach URL has a bad port: {url!r}") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


async def probe_server(base_url: str, api_key: str, timeout: float = 5.0) -> Found:
    """Check the server answers; learn its served model and whether it is our simulator."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, trust_env=False) as client:
        try:
            ready = await client.get("/ready")
            models = await client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise QwentuiError(f"cannot reach {base_url}: {exc or type(exc).__name__}",
                               hint="is the server running? check the URL and port") from None
        if models.status_code == 401:
            raise UsageError(f"{base_url} wants an API key: set engine.api_key or QWENTUI_ENGINE_API_KEY")
        if models.status_code != 200:
            raise QwentuiError(f"{base_url}/v1/models answered {models.status_code}; is it an OpenAI-compatible server?")
        liveness = "/ready" if ready.status_code in (200, 503) else "/v1/models"
        return Found(liveness, _first_model(models), await _simulated(client))


def _first_model(response: httpx.Response) -> str:
    try:
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data else ""
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return ""


async def _simulated(client: httpx.AsyncClient) -> bool:
    import httpx

    try:
        info = await client.get("/server_info")
        return info.status_code == 200 and info.json().get("simulated") is True
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
