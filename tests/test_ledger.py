"""The cost ledger: schema, migrations, crash recovery, damaged and locked files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from qwentui.cost import ledger as ledger_mod
from qwentui.cost.ledger import Ledger, LedgerDataError, LedgerError, iso, parse_iso, schema_version

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 4, 30, 10, 0, tzinfo=SH).timestamp()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "ledger.sqlite3"


def test_new_ledger_is_private_wal_and_versioned(path):
    with Ledger(path) as led:
        led.open_session("Tesla T4", Decimal("1.8"), "sim", gpu_class="T4")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            assert stat.S_IMODE(os.stat(extra).st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 2
    columns = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    assert {"id", "start_utc", "stop_utc", "heartbeat_utc", "minutes", "gpu_model", "gpu_class",
            "price_per_hour", "currency", "cost", "tokens_in", "tokens_out", "requests", "cache_hits",
            "cache_saved", "stop_reason", "engine_kind"} <= columns


def test_default_path_is_in_the_state_dir(tmp_path):
    with Ledger() as led:
        assert led.path == tmp_path / "xdg" / "state" / "qwentui" / "ledger.sqlite3"
    assert stat.S_IMODE(os.stat(led.path).st_mode) == 0o600


def test_an_existing_wide_open_file_is_made_private(path):
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    Ledger(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_seeds_dashboard_row(path):
    """Seed 4.1: 10:00 → 10:45, 45 minutes, T4, ¥1.8/h, cost 45/60 × 1.8 = 1.35."""
    with Ledger(path) as led:
        sid = led.open_session("Tesla T4", Decimal("1.8"), "sglang", gpu_class="T4", at=T0)
        row = led.close_session(sid, "user", at=T0 + 45 * 60)
    assert (row.minutes, row.gpu_class, row.price_per_hour, row.cost) == (45.0, "T4", Decimal("1.8"), Decimal("1.35"))
    assert datetime.fromtimestamp(row.start, SH).strftime("%Y-%m-%d %H:%M") == "2025-04-30 10:00"
    assert datetime.fromtimestamp(row.stop, SH).strftime("%Y-%m-%d %H:%M") == "2025-04-30 10:45"
    raw = sqlite3.connect(path).execute(
        "SELECT start_utc, stop_utc, typeof(price_per_hour), price_per_hour, typeof(cost), cost, stop_reason"
        " FROM sessions").fetchone()
    assert raw == ("2025-04-30T02:00:00.000Z", "2025-04-30T02:45:00.000Z", "text", "1.8", "text", "1.35", "user")


def test_heartbeat_counters_close_and_reasons(path):
    clock = iter([T0 + 30, T0 + 60]).__next__
    with Ledger(path, clock=clock) as led:
        sid = led.open_session("NVIDIA L4", Decimal("2.5"), gpu_class="L4", at=T0)
        assert led.heartbeat(sid, 10, 200, 2)
        assert led.heartbeat(sid, tokens_out=300)  # None leaves the other counters alone
        row = led.session(sid)
        assert (row.tokens_in, row.tokens_out, row.requests, row.heartbeat) == (10, 300, 2, T0 + 60)
        with pytest.raises(ValueError, match="stop_reason"):
            led.close_session(sid, "bored")
        first = led.close_session(sid, "idle", at=T0 + 3600)
        again = led.close_session(sid, "user", at=T0 + 7200)
        assert first == again and first.stop_reason == "idle" and first.cost == Decimal("2.5")
        assert not led.heartbeat(sid, 1, 1, 1, at=T0 + 9999)
        assert led.session(sid).tokens_out == 300


def test_unknown_price_is_stored_as_null_and_can_be_set_later(path):
    with Ledger(path) as led:
        sid = led.open_session("", None, at=T0)
        led.set_gpu(sid, "NVIDIA A10G", "A10G", Decimal("3.0"))
        row = led.close_session(sid, "user", at=T0 + 1800)
        assert (row.gpu_model, row.price_per_hour, row.cost) == ("NVIDIA A10G", Decimal("3.0"), Decimal("1.5"))
        other = led.open_session("Mystery GPU", None, at=T0)
        assert led.close_session(other, "user", at=T0 + 60).cost is None


def test_add_cache_savings_increments(path):
    with Ledger(path) as led:
        sid = led.open_session("T4", Decimal("1.8"), at=T0)
        led.add_cache_savings(sid, 2, 300)
        led.add_cache_savings(sid, 1, 50)
        led.close_session(sid, "batch-done", at=T0 + 60)
        led.add_cache_savings(sid, 1, 10)  # late hits of a finished batch still count
        row = led.session(sid)
        assert (row.cache_hits, row.cache_saved) == (4, 360)
        with pytest.raises(ValueError):
            led.add_cache_savings(sid, -1, 0)


def test_sessions_overlap_query_and_totals(path):
    with Ledger(path) as led:
        a = led.open_session("T4", Decimal("1.8"), at=T0)
        led.close_session(a, "user", at=T0 + 3600)
        b = led.open_session("T4", Decimal("1.8"), at=T0 + 7200)
        led.heartbeat(b, at=T0 + 9000)  # open, 30 min so far
        assert [r.id for r in led.sessions(T0 + 3599, T0 + 3601)] == [a]
        assert [r.id for r in led.sessions(T0 + 3601, T0 + 7100)] == []
        assert [r.id for r in led.sessions()] == [a, b]
        assert led.total_between(T0, T0 + 86400) == Decimal("1.8") + Decimal("0.9")
        assert led.month_total(2025, 4, SH) == Decimal("2.7")
        assert led.month_total(2025, 5, SH) == 0


def test_a_closed_ledger_refuses_writes_cleanly(path):
    led = Ledger(path)
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.heartbeat(1)


def test_iso_round_trip():
    assert iso(T0 + 0.25) == "2025-04-30T02:00:00.250Z"
    assert parse_iso(iso(T0 + 0.25)) == T0 + 0.25


# -- migrations and refusing what we do not understand ------------------------------------

def test_migrations_run_in_order_and_keep_data(path, monkeypatch):
    with Ledger(path) as led:
        sid = led.open_session("T4", Decimal("1.8"), at=T0)
    n = schema_version()
    steps = ledger_mod.MIGRATIONS + (
        (n + 1, "ALTER TABLE sessions ADD COLUMN note TEXT NOT NULL DEFAULT 'v2'"),
        (n + 2, "UPDATE sessions SET note = note || '+v3'"),
    )
    monkeypatch.setattr(ledger_mod, "MIGRATIONS", steps)
    with Ledger(path) as led:
        assert led.session(sid).gpu_model == "T4"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == n + 2
    assert conn.execute("SELECT note FROM sessions").fetchone()[0] == "v2+v3"


def test_a_failing_migration_leaves_the_old_version(path, monkeypatch):
    Ledger(path).close()
    n = schema_version()
    monkeypatch.setattr(ledger_mod, "MIGRATIONS", ledger_mod.MIGRATIONS + ((n + 1, "ALTER TABLE nope ADD x"),))
    with pytest.raises(LedgerError):
        Ledger(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == n


def test_newer_schema_is_refused_and_untouched(path):
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = _digest(path)
    with pytest.raises(LedgerDataError, match="schema version 7, newer than this qwentui understands"):
        Ledger(path)
    with pytest.raises(LedgerDataError, match="newer"):
        Ledger(path, read_only=True)
    assert _digest(path) == before


def test_garbage_file_is_reported_and_never_deleted(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, it is a grocery list\n" * 200)
    before = _digest(path)
    for read_only in (False, True):
        with pytest.raises(LedgerDataError, match="damaged.*left untouched"):
            Ledger(path, read_only=read_only)
    assert _digest(path) == before


def test_damaged_pages_are_reported(path):
    with Ledger(path) as led:
        for i in range(300):
            sid = led.open_session(f"GPU {i} " + "x" * 200, Decimal("1.8"), at=T0 + i)
            led.close_session(sid, "user", at=T0 + i + 60)
    data = bytearray(path.read_bytes())
    assert len(data) > 4096 * 4
    data[4096 * 2 + 8: 4096 * 2 + 400] = b"\xff" * 392  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    before = _digest(path)
    with pytest.raises(LedgerDataError, match="damaged"):
        Ledger(path)
    assert _digest(path) == before


@pytest.fixture
def locked(path):
    """Another process's exclusive lock, holding a commit that is still only in the WAL."""
    with Ledger(path) as led:
        sid = led.open_session("T4", Decimal("1.8"), at=T0)
        led.close_session(sid, "user", at=T0 + 3600)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO sessions (start_utc, heartbeat_utc) VALUES ('2025-04-30T05:00:00.000Z',"
                   " '2025-04-30T05:00:00.000Z')")
    holder.execute("COMMIT")
    yield path
    holder.close()


def test_locked_ledger_writer_gets_a_clear_error(locked):
    with pytest.raises(LedgerError, match="locked by another process") as err:
        Ledger(locked, timeout=0.1)
    assert not isinstance(err.value, LedgerDataError)  # runtime, exit 1
    assert locked.exists()


def test_locked_ledger_reads_read_only_from_the_last_checkpoint(locked):
    with Ledger(locked, read_only=True, timeout=0.1) as led:
        assert led.degraded and "locked" in led.degraded
        rows = led.sessions()
    assert [r.cost for r in rows] == [Decimal("1.8")]
    with pytest.raises(LedgerError, match="read-only"):
        Ledger(locked, read_only=True, timeout=0.1).open_session("T4", Decimal("1"))


def test_read_only_never_creates_a_ledger(path):
    with Ledger(path, read_only=True) as led:
        assert led.sessions() == [] and led.total_between(0, 2e9) == 0
    assert not path.exists()


# -- crash recovery -------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _set_pid(path, sid: int, pid: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET pid = ? WHERE id = ?", (pid, sid))
    conn.commit()
    conn.close()


def test_recover_closes_dead_sessions_at_their_last_heartbeat(path):
    now = T0 + 10_000
    with Ledger(path, clock=lambda: now) as led:
        dead = led.open_session("T4", Decimal("1.8"), at=T0)
        led.heartbeat(dead, 5, 50, 1, at=T0 + 1800)
        alive = led.open_session("T4", Decimal("1.8"), at=T0 + 9000)
        led.heartbeat(alive, at=now - 5)
        stale = led.open_session("T4", Decimal("1.8"), at=T0)
        led.heartbeat(stale, at=T0 + 600)
        old_boot = led.open_session("T4", Decimal("1.8"), at=T0 - 100)
        mine = led.open_session("T4", Decimal("1.8"), at=T0)
        _set_pid(path, dead, _dead_pid())
        for sid in (alive, stale, old_boot):
            _set_pid(path, sid, os.getppid())  # a live process that is not us
        assert [r.id for r in led.recover(boot_time=T0 - 50)] == [dead, old_boot]
        assert [r.id for r in led.recover(boot_time=T0 - 50, stale_after=3 * 30)] == [stale]
        row = led.session(dead)
        assert (row.stop, row.stop_reason, row.cost, row.tokens_out) == (T0 + 1800, "recovered", Decimal("0.9"), 50)
        assert led.session(alive).open and led.session(mine).open


CHILD = textwrap.dedent("""
    import sys, time
    from decimal import Decimal
    from qwentui.cost.ledger import Ledger
    led = Ledger(sys.argv[1])
    sid = led.open_session("Tesla T4", Decimal("1.8"), "sim", gpu_class="T4", at=1_700_000_000)
    print("open", sid, flush=True)
    i = 0
    while True:
        i += 1
        at = 1_700_000_000 + i  # one heartbeat per simulated second
        led.heartbeat(sid, i, 2 * i, i, at=at)
        print(i, flush=True)
""")


def test_kill_9_loses_at_most_one_heartbeat(path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "open"
        seen = 0
        while seen < 200:
            seen = int(proc.stdout.readline())
        os.kill(proc.pid, 9)  # mid-loop: possibly inside a commit
        proc.wait(timeout=10)
        for line in proc.stdout:
            seen = int(line)  # printed after committing, before the kill landed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Ledger(path) as led:
        [row] = led.recover()
        assert led.recover() == []
    n = row.tokens_in
    assert seen <= n <= seen + 1  # everything committed survived; at most the in-flight one is lost
    assert (row.stop, row.tokens_out, row.stop_reason) == (1_700_000_000 + n, 2 * n, "recovered")
    assert row.cost == Decimal("1.8") * Decimal(int(round((row.stop - row.start) * 1000))) / 3_600_000


WRITER = textwrap.dedent("""
    import sys, time
    from decimal import Decimal
    from qwentui.cost.ledger import Ledger
    led = Ledger(sys.argv[1])
    sid = led.open_session("Tesla T4", Decimal("1.8"), gpu_class="T4", at=1_700_000_000)
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    i = 0
    while time.monotonic() < end:
        i += 1
        led.heartbeat(sid, i, i, i, at=1_700_000_000 + i)
        if i % 50 == 0:
            other = led.open_session("T4", Decimal("1.8"), at=1_700_000_000 + i)
            led.close_session(other, "user", at=1_700_000_000 + i + 1)
    led.close_session(sid, "user", at=1_700_000_000 + i)
    print(i, flush=True)
""")


def test_concurrent_readers_during_writes(path):
    Ledger(path).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "1.5"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        last = 0
        try:
            with Ledger(path, read_only=True) as led:
                while proc.poll() is None:
                    rows = led.sessions()
                    first = rows[0]
                    assert first.tokens_in >= last  # never goes back, never half-written
                    assert first.tokens_in == first.tokens_out == first.requests
                    last = first.tokens_in
                    reads[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    written = int(proc.stdout.readline())
    proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors
    assert reads[0] > 10 and written > 10
    with Ledger(path, read_only=True) as led:
        rows = led.sessions()
        assert rows[0].tokens_in == written and not any(r.open for r in rows)
        assert len(rows) == 1 + written // 50
