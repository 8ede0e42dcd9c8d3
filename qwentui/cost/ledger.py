"""The cost ledger: one SQLite row per engine session, crash-safe by heartbeat.

WAL mode, one connection per `Ledger`, writes in `BEGIN IMMEDIATE` transactions.
The schema version lives in `PRAGMA user_version`; `MIGRATIONS` are applied in order
(oterm's store/upgrades). A ledger from a newer qwentui is refused, a damaged or
locked one is reported and never deleted or rewritten.

Times are stored as UTC ISO text with milliseconds ("2025-04-30T02:00:00.000Z");
money as Decimal text. The Python side speaks epoch seconds and `Decimal`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote

from qwentui.cost.billing import EXACT, Billing
from qwentui.cost.periods import cost_of, month_bounds, to_ms
from qwentui.errors import QwentuiError, UsageError

FILE_NAME = "ledger.sqlite3"
SIM_FILE_NAME = "ledger-sim.sqlite3"
# "timeout": the engine was stopped because its start-up took longer than engine.startup_timeout.
# A fleet worker's busy intervals and ledger session are labelled "worker URL"; this box's are not.
WORKER_SOURCE = "worker "
STOP_REASONS = ("user", "idle", "budget", "crash", "signal", "batch-done", "recovered", "timeout")

_V1 = """
CREATE TABLE sessions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    start_utc      TEXT NOT NULL,
    stop_utc       TEXT,
    heartbeat_utc  TEXT NOT NULL,
    minutes        REAL,
    gpu_model      TEXT NOT NULL DEFAULT '',
    gpu_class      TEXT NOT NULL DEFAULT '',
    price_per_hour TEXT,
    currency       TEXT NOT NULL DEFAULT 'CNY',
    cost           TEXT,
    tokens_in      INTEGER NOT NULL DEFAULT 0,
    tokens_out     INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,
    cache_hits     INTEGER NOT NULL DEFAULT 0,
    cache_saved    INTEGER NOT NULL DEFAULT 0,
    stop_reason    TEXT,
    engine_kind    TEXT NOT NULL DEFAULT 'sglang',
    pid            INTEGER
);
CREATE INDEX sessions_start ON sessions (start_utc);
CREATE INDEX sessions_open ON sessions (stop_utc) WHERE stop_utc IS NULL;
"""

# v2: each session's billing model (NULL unit = exact, as v1 billed) and the activity
# record the what-if replay reads: busy intervals and engine starts with their cold start.
_V2 = """
ALTER TABLE sessions ADD COLUMN bill_unit_ms INTEGER;
ALTER TABLE sessions ADD COLUMN bill_min_ms INTEGER NOT NULL DEFAULT 0;
CREATE TABLE activity (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    start_utc  TEXT NOT NULL,
    end_utc    TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX activity_start ON activity (start_utc);
CREATE TABLE engine_starts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    launch_utc  TEXT NOT NULL,
    ready_utc   TEXT NOT NULL,
    cold_start_s REAL NOT NULL,
    boot_s      REAL,
    engine_kind TEXT NOT NULL DEFAULT 'sglang'
);
CREATE INDEX engine_starts_launch ON engine_starts (launch_utc);
"""

# (version, SQL script); append only, never edit a released step.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2))


class LedgerError(QwentuiError):
    """The ledger cannot be used right now (locked, unreadable): exit 1."""

    title = "Ledger"


class LedgerDataError(UsageError):
    """The ledger file itself is unusable (damaged, newer schema): exit 2, file untouched."""

    title = "Ledger"


def schema_version() -> int:
    return MIGRATIONS[-1][0]


def default_path() -> Path:
    from qwentui import paths

    return paths.state_dir() / FILE_NAME


def path_for(kind: str) -> Path:
    """The ledger for an engine kind: simulated sessions (`--demo`) get their own file so
    they never show up in the real bill; `qwentui --demo report` reads that one."""
    path = default_path()
    return path.with_name(SIM_FILE_NAME) if kind == "sim" else path


def iso(ts: float) -> str:
    ms = to_ms(ts)
    stamp = datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _dec(text: str | None, name: str) -> Decimal | None:
    """A stored money value; a row edited (or written) with nan/inf/garbage is a BadRow."""
    if text is None:
        return None
    try:
        value = Decimal(str(text))
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite():
        raise BadRow(f"{name} {text!r} is not a finite number")
    return value


class BadRow(ValueError):
    """A ledger row that cannot be read; readers skip it and say which."""


@dataclass(frozen=True)
class SessionRow:
    """One engine session. `stop` is None while open; `end` is stop or the last heartbeat."""

    id: int
    start: float
    stop: float | None
    heartbeat: float
    minutes: float | None
    gpu_model: str
    gpu_class: str
    price_per_hour: Decimal | None
    currency: str
    cost: Decimal | None
    tokens_in: int
    tokens_out: int
    requests: int
    cache_hits: int
    cache_saved: int
    stop_reason: str | None
    engine_kind: str
    pid: int | None
    billing: Billing = EXACT

    @property
    def open(self) -> bool:
        return self.stop is None

    @property
    def worker(self) -> str | None:
        """A fleet session's worker URL (labelled "worker URL"); None for this box's own engine."""
        return self.gpu_model[len(WORKER_SOURCE):] if self.gpu_model.startswith(WORKER_SOURCE) else None

    @property
    def end(self) -> float:
        return self.stop if self.stop is not None else max(self.heartbeat, self.start)

    @property
    def billed_end(self) -> float:
        """Where the billed span ends: the end rounded up by the session's billing model
        (a started hour is paid to its end, so the rounding counts after the stop)."""
        return self.start + self.billing.billed_seconds(self.start, self.end)

    def cost_between(self, a: float, b: float) -> Decimal | None:
        """What this session cost inside [a, b) (its end is the last heartbeat while open)."""
        lo, hi = max(self.start, a), min(self.billed_end, b)
        return cost_of(self.price_per_hour, lo, max(lo, hi))

    @classmethod
    def from_db(cls, r: sqlite3.Row) -> "SessionRow":
        try:
            return cls(
                id=r["id"], start=parse_iso(r["start_utc"]),
                stop=parse_iso(r["stop_utc"]) if r["stop_utc"] else None,
                heartbeat=parse_iso(r["heartbeat_utc"]), minutes=r["minutes"],
                gpu_model=r["gpu_model"], gpu_class=r["gpu_class"],
                price_per_hour=_dec(r["price_per_hour"], "price_per_hour"), currency=r["currency"],
                cost=_dec(r["cost"], "cost"),
                tokens_in=r["tokens_in"], tokens_out=r["tokens_out"], requests=r["requests"],
                cache_hits=r["cache_hits"], cache_saved=r["cache_saved"], stop_reason=r["stop_reason"],
                engine_kind=r["engine_kind"], pid=r["pid"], billing=_billing_of(r))
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRow(f"session {r['id']}: {exc}") from None


def _range(start: float | None, end: float | None) -> tuple[str, str]:
    """(end, start) as ISO text for "starts before end and ends at/after start" queries."""
    return (iso(end) if end is not None else "9999", iso(start) if start is not None else "")


def _billing_of(r: sqlite3.Row) -> Billing:
    if "bill_unit_ms" not in r.keys() or r["bill_unit_ms"] is None:
        return EXACT  # v1 rows (or a v1 file read without migrating) were billed exactly
    return Billing(unit_ms=r["bill_unit_ms"], minimum_ms=r["bill_min_ms"] or 0)


def _classify(path: Path, exc: sqlite3.Error) -> QwentuiError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LedgerError(f"ledger {path} is locked by another process ({text})",
                           hint="wait for it or stop the other qwentui")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return LedgerDataError(f"ledger {path} is damaged ({text}); it was left untouched: "
                               "move it aside to start a new ledger")
    return LedgerError(f"cannot use ledger {path}: {text}")


def _create_private(path: Path) -> None:
    from qwentui import paths

    paths.ensure_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)  # an older file may have been created with a wider mode


def _pid_alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped: e.g. under an init that does not reap) is dead."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _boot_time() -> float:
    import psutil

    return psutil.boot_time()


class Ledger:
    """The session ledger. Writer by default; `read_only=True` never writes (reports).

    A read-only ledger whose file is locked falls back to the last checkpointed data
    and says so in `degraded`; a missing file reads as empty.
    """

    def __init__(self, path: Path | str | None = None, *, read_only: bool = False,
                 clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.read_only = read_only
        self.degraded: str | None = None
        self.skipped: list[str] = []  # rows readers could not use ("session 3: cost 'Infinity' ...")
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            if read_only:
                self._open_read_only(timeout)
            else:
                self._open_writer(timeout)
        except sqlite3.Error as exc:
            self.close()
            raise _classify(self.path, exc) from None
        except OSError as exc:  # read-only state dir, a directory where the file should be, ...
            self.close()
            raise LedgerError(f"cannot use ledger {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------

    def _connect(self, uri: str, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    def _open_writer(self, timeout: float) -> None:
        _create_private(self.path)
        conn = self._conn = self._connect(f"file:{quote(str(self.path))}", timeout)
        self._check_version(conn)
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise LedgerError(f"ledger {self.path}: cannot switch to WAL mode")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._check_integrity(conn)
        self._migrate(conn)

    def _open_read_only(self, timeout: float) -> None:
        if not self.path.exists():
            return
        base = f"file:{quote(str(self.path))}"
        try:
            # A reader is only blocked by an exclusive lock, which will not go away soon.
            conn = self._conn = self._connect(f"{base}?mode=ro", min(timeout, 1.0))
            self._check_version(conn)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "unable to open" not in str(exc):
                raise
            self.close()
            conn = self._conn = self._connect(f"{base}?immutable=1", timeout)
            self._check_version(conn)
            self.degraded = (f"ledger {self.path} is locked ({exc}); showing its last "
                             "checkpointed data read-only")
        self._check_integrity(conn)

    def _check_version(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version():
            raise LedgerDataError(
                f"ledger {self.path} has schema version {version}, newer than this qwentui "
                f"understands ({schema_version()}); upgrade qwentui or point XDG_STATE_HOME elsewhere")
        return version

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise LedgerDataError(f"ledger {self.path} is damaged ({result}); it was left "
                                  "untouched: move it aside to start a new ledger")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._write(conn):
            current = self._check_version(conn)
            for version, script in MIGRATIONS:
                if version <= current:
                    continue
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise LedgerError(f"ledger {self.path} is open read-only")
        conn = conn or self._conn
        if conn is None:
            raise LedgerError(f"ledger {self.path} is closed")
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _classify(self.path, exc) from None

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        if self._conn is None:
            return []
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) and self.read_only:
                    return []  # an empty ledger file that no writer has set up yet
                raise _classify(self.path, exc) from None
            except sqlite3.Error as exc:
                raise _classify(self.path, exc) from None

    # -- writing -------------------------------------------------------------------------

    def open_session(self, gpu_model: str, price_per_hour: Decimal | None, kind: str = "sglang", *,
                     gpu_class: str = "", currency: str = "CNY", at: float | None = None,
                     billing: Billing | None = None) -> int:
        """Start a session row (its heartbeat = its start); returns its id. `billing`
        (default per second, no minimum) is kept with the row so later config changes
        never re-price it."""
        now = iso(self._clock() if at is None else at)
        price = None if price_per_hour is None else str(price_per_hour)
        billing = billing or Billing()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (start_utc, heartbeat_utc, gpu_model, gpu_class, price_per_hour,"
                " currency, engine_kind, pid, bill_unit_ms, bill_min_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, now, gpu_model or "", gpu_class or "", price, currency, kind, os.getpid(),
                 billing.unit_ms, billing.minimum_ms))
            return int(cur.lastrowid)

    def set_gpu(self, session_id: int, gpu_model: str, gpu_class: str,
                price_per_hour: Decimal | None) -> None:
        """Fill in the GPU and price once NVML has seen it (sessions may open before)."""
        price = None if price_per_hour is None else str(price_per_hour)
        with self._write() as conn:
            conn.execute("UPDATE sessions SET gpu_model = ?, gpu_class = ?, price_per_hour = ?"
                         " WHERE id = ? AND stop_utc IS NULL",
                         (gpu_model or "", gpu_class or "", price, session_id))

    def heartbeat(self, session_id: int, tokens_in: int | None = None, tokens_out: int | None = None,
                  requests: int | None = None, cache_hits: int | None = None, *,
                  at: float | None = None) -> bool:
        """Record that the session is alive, with its cumulative counters (None = unchanged).

        Returns False when the session is no longer open (closed or recovered elsewhere).
        """
        now = iso(self._clock() if at is None else at)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE sessions SET heartbeat_utc = ?, tokens_in = COALESCE(?, tokens_in),"
                " tokens_out = COALESCE(?, tokens_out), requests = COALESCE(?, requests),"
                " cache_hits = COALESCE(?, cache_hits) WHERE id = ? AND stop_utc IS NULL",
                (now, tokens_in, tokens_out, requests, cache_hits, session_id))
            return cur.rowcount == 1

    def add_cache_savings(self, session_id: int, hits: int, saved_tokens: int) -> None:
        """Add cache hits and the generated tokens they saved (increments, any session state)."""
        if hits < 0 or saved_tokens < 0:
            raise ValueError("cache hits and saved tokens must not be negative")
        with self._write() as conn:
            conn.execute("UPDATE sessions SET cache_hits = cache_hits + ?, cache_saved = cache_saved + ?"
                         " WHERE id = ?", (hits, saved_tokens, session_id))

    def close_session(self, session_id: int, stop_reason: str, *, at: float | None = None,
                      tokens_in: int | None = None, tokens_out: int | None = None,
                      requests: int | None = None) -> SessionRow:
        """Close an open session at `at` (default now); closing twice keeps the first close."""
        if stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason must be one of {', '.join(STOP_REASONS)}, got {stop_reason!r}")
        with self._write() as conn:
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise LedgerError(f"ledger {self.path} has no session {session_id}")
            if row["stop_utc"] is None:
                stop = self._clock() if at is None else at
                self._finish(conn, SessionRow.from_db(row), stop, stop_reason)
                if (tokens_in, tokens_out, requests) != (None, None, None):
                    conn.execute("UPDATE sessions SET tokens_in = COALESCE(?, tokens_in),"
                                 " tokens_out = COALESCE(?, tokens_out), requests = COALESCE(?, requests)"
                                 " WHERE id = ?", (tokens_in, tokens_out, requests, session_id))
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return SessionRow.from_db(row)

    def _finish(self, conn: sqlite3.Connection, row: SessionRow, stop: float, reason: str) -> None:
        stop = max(stop, row.start)
        minutes = (to_ms(stop) - to_ms(row.start)) / 60000
        cost = row.billing.cost(row.price_per_hour, row.start, stop)
        conn.execute("UPDATE sessions SET stop_utc = ?, heartbeat_utc = ?, minutes = ?, cost = ?,"
                     " stop_reason = ? WHERE id = ? AND stop_utc IS NULL",
                     (iso(stop), iso(max(stop, row.heartbeat)), minutes,
                      None if cost is None else str(cost), reason, row.id))

    def recover(self, *, stale_after: float | None = None, boot_time: float | None = None) -> list[SessionRow]:
        """Close sessions left open by a dead qwentui at their last heartbeat ("recovered").

        A session is dead when its process is gone, it began before this boot, or (when
        `stale_after` seconds is given) its heartbeat is older than that.
        """
        boot = _boot_time() if boot_time is None else boot_time
        now = self._clock()
        closed = []
        with self._write() as conn:
            for raw in conn.execute("SELECT * FROM sessions WHERE stop_utc IS NULL").fetchall():
                try:
                    row = SessionRow.from_db(raw)
                except BadRow as exc:
                    self.skipped.append(str(exc))
                    continue
                if row.pid == os.getpid():
                    continue
                stale = stale_after is not None and now - row.heartbeat > stale_after
                if row.pid is None or not _pid_alive(row.pid) or row.start < boot or stale:
                    self._finish(conn, row, row.heartbeat, "recovered")
                    closed.append(row.id)
        return [self.session(i) for i in closed]

    def add_activity(self, start: float, end: float, source: str = "") -> None:
        """One busy interval (already coalesced by the recorder)."""
        if end < start:
            raise ValueError("an activity interval cannot end before it starts")
        with self._write() as conn:
            conn.execute("INSERT INTO activity (start_utc, end_utc, source) VALUES (?, ?, ?)",
                         (iso(start), iso(end), source))

    def add_engine_start(self, launch: float, ready: float, *, boot_s: float | None = None,
                         kind: str = "sglang") -> None:
        """An engine start and its measured cold start (launch → ready)."""
        with self._write() as conn:
            conn.execute("INSERT INTO engine_starts (launch_utc, ready_utc, cold_start_s, boot_s,"
                         " engine_kind) VALUES (?, ?, ?, ?, ?)",
                         (iso(launch), iso(ready), max(0.0, ready - launch), boot_s, kind))

    # -- reading -------------------------------------------------------------------------

    def activity(self, start: float | None = None, end: float | None = None, *,
                 worker: str | None = None) -> list[tuple[float, float]]:
        """Busy intervals overlapping [start, end), oldest first ([] for a v1 ledger).

        This box's own by default; with `worker`, that fleet worker's (source "worker URL")."""
        which = "source = ?" if worker else "source NOT LIKE ?"
        rows = self._query(f"SELECT start_utc, end_utc FROM activity WHERE start_utc < ? AND end_utc >= ?"
                           f" AND {which} ORDER BY start_utc, id",
                           (*_range(start, end), WORKER_SOURCE + (worker or "%")))
        return [(parse_iso(r["start_utc"]), parse_iso(r["end_utc"])) for r in rows]

    def active_workers(self, start: float | None = None, end: float | None = None) -> list[str]:
        """Fleet workers with busy intervals overlapping [start, end), by URL."""
        rows = self._query("SELECT DISTINCT source FROM activity WHERE start_utc < ? AND end_utc >= ?"
                           " AND source LIKE ? ORDER BY source", (*_range(start, end), WORKER_SOURCE + "%"))
        return [r["source"][len(WORKER_SOURCE):] for r in rows]

    def cold_starts(self, start: float | None = None, end: float | None = None) -> list[float]:
        """Measured cold starts (seconds) of engines launched in [start, end)."""
        return [ready - launch for launch, ready in self.engine_starts(start, end)]

    def engine_starts(self, start: float | None = None, end: float | None = None) -> list[tuple[float, float]]:
        """(launch, ready) of engines launched in [start, end), oldest first ([] for a v1 ledger)."""
        lo, hi = _range(start, end)[::-1]
        rows = self._query("SELECT launch_utc, cold_start_s FROM engine_starts WHERE launch_utc >= ?"
                           " AND launch_utc < ? ORDER BY launch_utc, id", (lo, hi))
        return [(parse_iso(r["launch_utc"]), parse_iso(r["launch_utc"]) + float(r["cold_start_s"]))
                for r in rows]

    def session(self, session_id: int) -> SessionRow:
        rows = self._query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise LedgerError(f"ledger {self.path} has no session {session_id}")
        return SessionRow.from_db(rows[0])

    def sessions(self, start: float | None = None, end: float | None = None) -> list[SessionRow]:
        """Sessions overlapping [start, end), oldest first; open ones end at their heartbeat."""
        lo = iso(start) if start is not None else ""
        hi = iso(end) if end is not None else "9999"
        rows = self._query(
            "SELECT * FROM sessions WHERE start_utc < ? AND COALESCE(stop_utc, heartbeat_utc) >= ?"
            " ORDER BY start_utc, id", (hi, lo))
        out = []
        for r in rows:
            try:
                out.append(SessionRow.from_db(r))
            except BadRow as exc:  # one hand-edited or corrupt row must not hide all the others
                if str(exc) not in self.skipped:
                    self.skipped.append(str(exc))
        return out

    def total_between(self, start: float, end: float) -> Decimal:
        """Money spent in [start, end) by sessions with a known price."""
        total = Decimal(0)
        for row in self.sessions(start, end):
            total += row.cost_between(start, end) or 0
        return total

    def month_total(self, year: int, month: int, tz=None) -> Decimal:
        return self.total_between(*month_bounds(year, month, tz))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
