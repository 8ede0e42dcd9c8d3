"""Redis backend against a real redis-server on a free loopback port (skipped without one)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time

import pytest

from qwentui.cache import CachedAnswer, NullCache, RedisCache, open_cache
from qwentui.config import CacheConfig
from tests.conftest import free_port
from tests.waits import poll_until

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def answer(content: str = "hi") -> CachedAnswer:
    return CachedAnswer(content=content, reasoning="", usage={"completion_tokens": 3},
                        finish_reason="stop", latency_s=0.5)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, timeout: float = 10.0) -> None:
    if not poll_until(lambda: _listening(port), timeout):
        raise RuntimeError("redis-server did not start")


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cfg(url: str, **kw) -> CacheConfig:
    return dataclasses.replace(CacheConfig(), enabled=True, backend="redis", redis_url=url, **kw)


async def test_round_trip_and_stats(redis_url):
    url, _ = redis_url
    c = await open_cache(cfg(url))
    assert isinstance(c, RedisCache) and c.enabled
    key = c.key_for("m", [{"role": "user", "content": "q"}], thinking=False, params={"temperature": 0.7})
    assert await c.get(key) is None
    assert await c.put(key, answer("cached!"))
    assert (await c.get(key)).content == "cached!"
    s = c.stats()
    assert (s.backend, s.hits, s.misses, s.tokens_saved) == ("redis", 1, 1, 3)
    await c.aclose()


async def test_ttl_uses_injected_clock_and_redis_expiry(redis_url):
    url, _ = redis_url
    clock = Clock()
    c = await open_cache(cfg(url, ttl=1.0), clock=clock)
    await c.put("k", answer())
    assert await c.get("k") is not None
    clock.now += 2  # our clock says expired, even before Redis drops it
    assert await c.get("k") is None
    await c.aclose()


async def test_size_cap_evicts_oldest(redis_url):
    url, _ = redis_url
    clock = Clock()
    c = await open_cache(cfg(url, max_entries=2), clock=clock)
    for i in range(4):
        clock.now += 1
        await c.put(f"k{i}", answer(f"a{i}"))
    assert await c.count() == 2
    assert await c.get("k0") is None and await c.get("k1") is None
    assert (await c.get("k3")).content == "a3"
    await c.clear()
    assert await c.count() == 0
    await c.aclose()


async def test_redis_down_at_start_disables_with_warning():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    c = await open_cache(cfg(url))
    assert isinstance(c, NullCache) and not c.enabled
    warning = c.stats().warning
    assert "Redis" in warning and "unavailable" in warning
    assert "s3cret" not in warning  # the URL's password is masked
    assert await c.get("k") is None


async def test_redis_dies_mid_use_disables_and_work_continues(redis_url):
    url, proc = redis_url
    c = await open_cache(cfg(url))
    await c.put("k", answer())
    proc.terminate()
    proc.wait(timeout=10)
    assert await c.get("k") is None  # a miss, not an exception
    assert not c.enabled and "unavailable" in c.stats().warning
    assert not await c.put("k2", answer())
    await c.aclose()
