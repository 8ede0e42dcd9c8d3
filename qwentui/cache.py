"""Prompt cache (the seed's strategy 4): repeated requests are not paid for twice.

Exact match only. The key is the sha256 of canonical JSON over everything that shapes
the answer: model, messages, sampling parameters (incl. max_tokens) and the thinking
flag. Two backends share one interface:

- SQLite (default): one file in the state dir, 0600, WAL, schema in `PRAGMA user_version`,
  TTL (`cache.ttl`) and a size cap (`cache.max_entries`, oldest entries evicted first).
- Redis (`cache.backend = "redis"`, needs the `redis` extra): values expire with the TTL
  (PX) and an index sorted set enforces the same size cap.

A cache problem never stops work: an unreachable Redis or an unreadable SQLite file
disables the cache, records one warning (`stats().warning`) and every lookup misses.

Which requests are cached (`cache.policy`): "all" by default, because caching is
opt-in (`cache.enabled` / `batch --cache`) and a user who turns it on wants repeated
prompts answered from it even though sampling at temperature > 0 could have produced
a different answer; "deterministic" caches only requests with temperature 0 or a seed.

Money saved is an estimate, see `money_saved`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from qwentui.config import CacheConfig, mask_url

KEY_VERSION = 1
CACHEABLE_FINISH = ("stop", "length")


@dataclass(frozen=True)
class CachedAnswer:
    content: str
    reasoning: str
    usage: dict  # prompt_tokens, completion_tokens, reasoning_tokens, total_tokens
    finish_reason: str
    latency_s: float  # how long the engine took to produce it originally
    created_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "CachedAnswer":
        data = json.loads(text)
        return cls(content=str(data["content"]), reasoning=str(data.get("reasoning") or ""),
                   usage=dict(data.get("usage") or {}), finish_reason=str(data["finish_reason"]),
                   latency_s=float(data.get("latency_s") or 0.0), created_at=float(data.get("created_at") or 0.0))


@dataclass(frozen=True)
class CacheStats:
    backend: str  # "sqlite" | "redis" | "off"
    enabled: bool
    hits: int = 0
    misses: int = 0
    skipped: int = 0  # requests the policy did not allow to be cached
    tokens_saved: int = 0  # completion tokens served from the cache instead of generated
    latency_saved_s: float = 0.0  # sum of the original latencies of the answers served
    warning: str | None = None

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


def cache_key(model: str, messages: Sequence[Mapping[str, Any]], *, thinking: bool,
              params: Mapping[str, Any]) -> str:
    """sha256 hex of canonical JSON; dict key order and float spelling do not matter."""
    payload = {"v": KEY_VERSION, "model": model, "messages": list(messages),
               "params": {k: v for k, v in params.items() if v is not None}, "thinking": bool(thinking)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_cacheable(params: Mapping[str, Any], policy: str) -> bool:
    if policy == "all":
        return True
    temperature = params.get("temperature")
    return params.get("seed") is not None or (temperature is not None and float(temperature) == 0.0)


def money_saved(stats: CacheStats, price_per_hour: Decimal | None,
                tokens_per_s: float | None = None) -> Decimal | None:
    """Estimated box cost of the engine time the hits avoided.

    With a measured aggregate throughput (completion tokens per second of wall time,
    e.g. a batch's) the saved time is tokens_saved / throughput: what the engine would
    have needed at that load. Without one it is the sum of the original latencies,
    which overstates the saving when requests ran concurrently. Either way the money is
    only really saved if the box is stopped earlier (batch --then stop, idle stop).
    """
    if price_per_hour is None:
        return None
    if tokens_per_s and tokens_per_s > 0:
        seconds = stats.tokens_saved / tokens_per_s
    else:
        seconds = stats.latency_saved_s
    return Decimal(str(round(seconds, 3))) * Decimal(price_per_hour) / Decimal(3600)


class PromptCache:
    """Backend-independent part: policy, statistics, fail-open behaviour."""

    backend = "off"

    def __init__(self, *, ttl: float = 3600.0, max_entries: int = 10000, policy: str = "all",
                 clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.policy = policy
        self._clock = clock
        self._stats = CacheStats(backend=self.backend, enabled=self.backend != "off")
        self._lock = threading.Lock()

    # -------------------------------------------------------------- public API

    def stats(self) -> CacheStats:
        return self._stats

    @property
    def enabled(self) -> bool:
        return self._stats.enabled

    def key_for(self, model: str, messages: Sequence[Mapping[str, Any]], *, thinking: bool,
                params: Mapping[str, Any]) -> str | None:
        """The key, or None (counted as skipped) when the policy excludes the request."""
        if not self.enabled:
            return None
        if not is_cacheable(params, self.policy):
            self._bump(skipped=1)
            return None
        return cache_key(model, messages, thinking=thinking, params=params)

    async def get(self, key: str | None) -> CachedAnswer | None:
        if key is None or not self.enabled:
            return None
        try:
            answer = await self._get(key, self._clock())
        except Exception as exc:  # noqa: BLE001 - any backend failure disables, never breaks work
            self.disable(f"cache disabled: {self._describe_error(exc)}")
            return None
        if answer is None:
            self._bump(misses=1)
            return None
        self._bump(hits=1, tokens_saved=int(answer.usage.get("completion_tokens") or 0),
                   latency_saved_s=answer.latency_s)
        return answer

    async def put(self, key: str | None, answer: CachedAnswer) -> bool:
        """Store an answer; only complete ones ("stop"/"length") are kept."""
        if key is None or not self.enabled or answer.finish_reason not in CACHEABLE_FINISH:
            return False
        answer = replace(answer, created_at=self._clock())
        try:
            await self._put(key, answer)
        except Exception as exc:  # noqa: BLE001
            self.disable(f"cache disabled: {self._describe_error(exc)}")
            return False
        return True

    def disable(self, warning: str) -> None:
        self._stats = replace(self._stats, enabled=False, warning=self._stats.warning or warning)

    async def clear(self) -> None:
        if self.enabled:
            await self._clear()

    async def aclose(self) -> None:
        """Release the backend; statistics stay readable."""

    # -------------------------------------------------------------- backend hooks

    async def _get(self, key: str, now: float) -> CachedAnswer | None:
        return None

    async def _put(self, key: str, answer: CachedAnswer) -> None:
        return None

    async def _clear(self) -> None:
        return None

    def _describe_error(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {exc}"

    def _bump(self, **deltas: float) -> None:
        with self._lock:
            s = self._stats
            self._stats = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})


class NullCache(PromptCache):
    """The cache when it is off: every method is a no-op, stats say "off"."""

    def __init__(self, warning: str | None = None, backend: str = "off") -> None:
        super().__init__()
        self._stats = CacheStats(backend=backend, enabled=False, warning=warning)


# ------------------------------------------------------------------ SQLite

_MIGRATIONS: tuple[str, ...] = (
    # v1
    """
    CREATE TABLE entries (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX entries_created ON entries (created_at);
    CREATE INDEX entries_expires ON entries (expires_at);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
_PURGE_EVERY = 200  # puts between sweeps of expired rows


def default_sqlite_path() -> Path:
    from qwentui import paths

    return paths.state_dir() / "cache.sqlite3"


class SqliteCache(PromptCache):
    backend = "sqlite"

    def __init__(self, path: str | Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = Path(path) if path is not None else default_sqlite_path()
        self._db = _open_sqlite(self.path)
        self._puts = 0
        self._purge(self._clock())

    async def _get(self, key: str, now: float) -> CachedAnswer | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM entries WHERE key = ? AND expires_at > ?",
                                   (key, now)).fetchone()
        return CachedAnswer.from_json(row[0]) if row else None

    async def _put(self, key: str, answer: CachedAnswer) -> None:
        now = answer.created_at
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO entries (key, value, created_at, expires_at) "
                             "VALUES (?, ?, ?, ?)", (key, answer.to_json(), now, now + self.ttl))
            # Size cap: keep the newest max_entries rows.
            self._db.execute("DELETE FROM entries WHERE key IN (SELECT key FROM entries "
                             "ORDER BY created_at DESC LIMIT -1 OFFSET ?)", (self.max_entries,))
            self._puts += 1
        if self._puts % _PURGE_EVERY == 0:
            self._purge(now)

    async def _clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries")

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def _purge(self, now: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()
        self._stats = replace(self._stats, enabled=False)


def _open_sqlite(path: Path) -> sqlite3.Connection:
    from qwentui import paths

    paths.ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"{path} has cache schema v{version}, newer than this qwentui "
                                    f"(v{SCHEMA_VERSION})")
    for number in range(version, SCHEMA_VERSION):
        db.executescript(f"BEGIN; {_MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;")


# ------------------------------------------------------------------ Redis


class RedisCache(PromptCache):
    """redis.asyncio client; the first failure disables the cache (fail open)."""

    backend = "redis"
    PREFIX = f"qwentui:cache:v{KEY_VERSION}:"

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        import redis.asyncio as aioredis

        self.url = url
        self._index = self.PREFIX + "index"
        self._redis = aioredis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)

    async def check(self) -> bool:
        """Ping once; on failure the cache is disabled with a warning."""
        if not self.enabled:
            return False
        try:
            await self._redis.ping()
        except Exception as exc:  # noqa: BLE001
            self.disable(f"cache disabled: {self._describe_error(exc)}")
            return False
        return True

    async def _get(self, key: str, now: float) -> CachedAnswer | None:
        raw = await self._redis.get(self.PREFIX + key)
        if raw is None:
            return None
        answer = CachedAnswer.from_json(raw)
        # Redis expiry uses the server's clock; the stored time keeps the TTL exact here too.
        return answer if answer.created_at + self.ttl > now else None

    async def _put(self, key: str, answer: CachedAnswer) -> None:
        name = self.PREFIX + key
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(name, answer.to_json(), px=max(1, int(self.ttl * 1000)))
            pipe.zadd(self._index, {name: answer.created_at})
            pipe.zremrangebyscore(self._index, "-inf", answer.created_at - self.ttl)
            pipe.zcard(self._index)
            *_, size = await pipe.execute()
        excess = int(size) - self.max_entries
        if excess > 0:
            oldest = await self._redis.zpopmin(self._index, excess)
            if oldest:
                await self._redis.delete(*[member for member, _ in oldest])

    async def _clear(self) -> None:
        names = await self._redis.zrange(self._index, 0, -1)
        await self._redis.delete(self._index, *names)

    async def count(self) -> int:
        return int(await self._redis.zcard(self._index))

    def _describe_error(self, exc: Exception) -> str:
        return f"Redis at {mask_url(self.url)} is unavailable ({type(exc).__name__}: {exc})"

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
            pass
        self._stats = replace(self._stats, enabled=False)


# ------------------------------------------------------------------ factory


async def open_cache(cfg: CacheConfig, *, enabled: bool | None = None, path: str | Path | None = None,
                     clock: Callable[[], float] = time.time) -> PromptCache:
    """The configured cache, ready to use; never raises for backend problems.

    `enabled` overrides `cfg.enabled` (e.g. `batch --cache`). A failing backend gives
    a `NullCache` whose `stats().warning` says why.
    """
    if not (cfg.enabled if enabled is None else enabled):
        return NullCache()
    common = {"ttl": cfg.ttl, "max_entries": cfg.max_entries, "policy": cfg.policy, "clock": clock}
    if cfg.backend == "redis":
        try:
            cache: PromptCache = RedisCache(cfg.redis_url, **common)
        except ImportError:
            return NullCache("cache disabled: the Redis backend needs the redis extra "
                             "(pip install 'qwentui[redis]')", backend="redis")
        if not await cache.check():
            warning = cache.stats().warning
            await cache.aclose()
            return NullCache(warning, backend="redis")
        return cache
    try:
        return SqliteCache(path, **common)
    except (OSError, sqlite3.Error) as exc:
        where = path or default_sqlite_path()
        return NullCache(f"cache disabled: cannot open {where} ({exc})", backend="sqlite")
