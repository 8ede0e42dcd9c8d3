"""Prompt cache: key, policy, SQLite backend (TTL, cap, schema, perms), fail-open, money."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
from decimal import Decimal

import pytest

from qwentui import cache as cache_mod
from qwentui.cache import (
    CachedAnswer,
    CacheStats,
    NullCache,
    SqliteCache,
    cache_key,
    is_cacheable,
    money_saved,
    open_cache,
)
from qwentui.config import CacheConfig, from_mapping

MSGS = [{"role": "user", "content": "你是谁?"}]
PARAMS = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "max_tokens": 64}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def answer(content="I am Qwen.", tokens=12, finish="stop", latency=0.8) -> CachedAnswer:
    usage = {"prompt_tokens": 5, "completion_tokens": tokens, "reasoning_tokens": 0, "total_tokens": 5 + tokens}
    return CachedAnswer(content=content, reasoning="thought", usage=usage, finish_reason=finish, latency_s=latency)


# ---------------------------------------------------------------- key and policy


def test_key_is_stable_and_order_independent():
    a = cache_key("m", MSGS, thinking=True, params=PARAMS)
    b = cache_key("m", [dict(reversed(list(MSGS[0].items())))], thinking=True,
                  params=dict(reversed(list(PARAMS.items()))))
    assert a == b and len(a) == 64


@pytest.mark.parametrize("change", [
    {"model": "other"},
    {"messages": [{"role": "user", "content": "who are you?"}]},
    {"thinking": False},
    {"params": {**PARAMS, "temperature": 0.7}},
    {"params": {**PARAMS, "max_tokens": 65}},
])
def test_key_changes_with_anything_that_shapes_the_answer(change):
    base = {"model": "m", "messages": MSGS, "thinking": True, "params": PARAMS}
    changed = {**base, **change}
    assert cache_key(base["model"], base["messages"], thinking=base["thinking"], params=base["params"]) != \
        cache_key(changed["model"], changed["messages"], thinking=changed["thinking"], params=changed["params"])


def test_none_params_do_not_change_the_key():
    assert cache_key("m", MSGS, thinking=True, params={**PARAMS, "seed": None}) == \
        cache_key("m", MSGS, thinking=True, params=PARAMS)


@pytest.mark.parametrize("params,policy,expected", [
    ({"temperature": 0.6}, "all", True),
    ({"temperature": 0.6}, "deterministic", False),
    ({"temperature": 0}, "deterministic", True),
    ({"temperature": 0.6, "seed": 7}, "deterministic", True),
    ({}, "deterministic", False),
])
def test_policy(params, policy, expected):
    assert is_cacheable(params, policy) is expected


def test_policy_is_a_config_key():
    assert from_mapping({"cache": {"policy": "deterministic"}}).cache.policy == "deterministic"
    with pytest.raises(Exception, match="cache.policy"):
        from_mapping({"cache": {"policy": "sometimes"}})


# ---------------------------------------------------------------- SQLite backend


async def test_sqlite_round_trip_and_stats(tmp_path):
    c = SqliteCache(tmp_path / "c.db", clock=Clock())
    key = c.key_for("m", MSGS, thinking=True, params=PARAMS)
    assert await c.get(key) is None
    assert await c.put(key, answer())
    got = await c.get(key)
    assert got.content == "I am Qwen." and got.reasoning == "thought" and got.finish_reason == "stop"
    assert got.usage["completion_tokens"] == 12
    s = c.stats()
    assert (s.backend, s.enabled, s.hits, s.misses, s.tokens_saved) == ("sqlite", True, 1, 1, 12)
    assert s.hit_rate == 0.5 and s.latency_saved_s == pytest.approx(0.8)
    await c.aclose()


async def test_sqlite_persists_across_instances(tmp_path):
    path = tmp_path / "c.db"
    c = SqliteCache(path, clock=Clock())
    await c.put("k", answer("persisted"))
    await c.aclose()
    c2 = SqliteCache(path, clock=Clock())
    assert (await c2.get("k")).content == "persisted"
    await c2.aclose()


async def test_sqlite_ttl(tmp_path):
    clock = Clock()
    c = SqliteCache(tmp_path / "c.db", ttl=3600, clock=clock)
    await c.put("k", answer())
    clock.now += 3599
    assert await c.get("k") is not None
    clock.now += 2
    assert await c.get("k") is None
    assert c.stats().misses == 1


async def test_sqlite_expired_rows_are_purged_on_open(tmp_path):
    clock = Clock()
    c = SqliteCache(tmp_path / "c.db", ttl=10, clock=clock)
    for i in range(5):
        await c.put(f"k{i}", answer())
    await c.aclose()
    clock.now += 11
    c2 = SqliteCache(tmp_path / "c.db", ttl=10, clock=clock)
    assert c2.count() == 0


async def test_sqlite_size_cap_evicts_oldest(tmp_path):
    clock = Clock()
    c = SqliteCache(tmp_path / "c.db", max_entries=3, clock=clock)
    for i in range(5):
        clock.now += 1
        await c.put(f"k{i}", answer(f"a{i}"))
    assert c.count() == 3
    assert await c.get("k0") is None and await c.get("k1") is None
    assert (await c.get("k4")).content == "a4"


async def test_only_complete_answers_are_stored(tmp_path):
    c = SqliteCache(tmp_path / "c.db", clock=Clock())
    assert not await c.put("k", answer(finish="abort"))
    assert await c.put("k2", answer(finish="length"))
    assert c.count() == 1


async def test_policy_skips_are_counted(tmp_path):
    c = SqliteCache(tmp_path / "c.db", policy="deterministic", clock=Clock())
    assert c.key_for("m", MSGS, thinking=True, params=PARAMS) is None
    assert c.key_for("m", MSGS, thinking=True, params={**PARAMS, "temperature": 0}) is not None
    assert c.stats().skipped == 1


async def test_sqlite_file_is_private_wal_and_versioned(tmp_path):
    path = tmp_path / "state" / "c.db"
    c = SqliteCache(path, clock=Clock())
    await c.put("k", answer())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in path.parent.glob("c.db-*"):
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0
    await c.aclose()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == cache_mod.SCHEMA_VERSION
    db.close()


async def test_default_path_is_in_the_state_dir(tmp_path):
    cfg = dataclasses.replace(CacheConfig(), enabled=True)
    c = await open_cache(cfg)
    assert isinstance(c, SqliteCache)
    assert c.path.parent == cache_mod.default_sqlite_path().parent
    assert str(tmp_path) in str(c.path)  # conftest isolates XDG_STATE_HOME
    await c.aclose()


async def test_newer_schema_disables_cache_with_warning(tmp_path):
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    c = await open_cache(CacheConfig(enabled=True), path=path)
    assert isinstance(c, NullCache) and not c.enabled
    assert "newer" in c.stats().warning and c.stats().backend == "sqlite"
    assert await c.get("k") is None and not await c.put("k", answer())


async def test_unwritable_location_disables_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    c = await open_cache(CacheConfig(enabled=True), path=blocker / "sub" / "c.db")
    assert not c.enabled and "cannot open" in c.stats().warning


async def test_backend_failure_mid_use_disables_and_keeps_going(tmp_path):
    c = SqliteCache(tmp_path / "c.db", clock=Clock())
    c._db.close()  # the file vanishes under us (disk error, deleted state dir)
    assert await c.get("k") is None
    assert not c.enabled and "cache disabled" in c.stats().warning
    assert not await c.put("k", answer())


async def test_disabled_config_gives_null_cache():
    c = await open_cache(CacheConfig())
    assert isinstance(c, NullCache)
    assert c.stats() == CacheStats(backend="off", enabled=False)
    assert c.key_for("m", MSGS, thinking=True, params=PARAMS) is None


# ---------------------------------------------------------------- money


def test_money_saved_uses_throughput_when_known():
    s = CacheStats(backend="sqlite", enabled=True, hits=10, tokens_saved=36000, latency_saved_s=100.0)
    # 36000 tokens at 100 tok/s = 360 s = 0.1 h at 1.8/h
    assert money_saved(s, Decimal("1.8"), tokens_per_s=100.0) == Decimal("0.18")
    # no throughput: sum of latencies (100 s) at 36/h
    assert money_saved(s, Decimal("36"), None) == Decimal("1")
    assert money_saved(s, None, 100.0) is None
