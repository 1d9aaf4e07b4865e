"""The embedded SQLite store: one file shared by every worker process, WAL, atomic writes.

Every call runs on one dedicated thread (the event loop never waits on the disk) that owns the
connection. Writes run in one `BEGIN IMMEDIATE` transaction each, so a read-modify-write verb
(consume, incr, acquire, put_if_absent) takes the write lock before it reads and two processes on
one file never interleave; the busy timeout makes a writer wait for another instead of failing.
The schema is versioned: `MIGRATIONS[i]` moves it from version i to i + 1, applied at open inside
the same transaction that records the new version in `schema_version`. Expired rows are absent for
every verb and are purged every `PURGE_EVERY` writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bastion.store.base import StoreUnavailable

T = TypeVar("T")

#: SQL scripts; statements separated by ";" (no ";" inside literals). Append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE records (
        ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires REAL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    CREATE INDEX records_expires ON records (expires) WHERE expires IS NOT NULL;
    CREATE TABLE counters (
        ns TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE members (
        ns TEXT NOT NULL, key TEXT NOT NULL, member TEXT NOT NULL,
        PRIMARY KEY (ns, key, member)
    ) WITHOUT ROWID;
    CREATE TABLE versions (topic TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID
    """,
]

PURGE_EVERY = 200
LIVE = "(expires IS NULL OR expires > ?)"
NOW = object()  # a statement parameter: the clock's reading, taken as the statement runs


class SqliteStore:
    """The Store protocol on one SQLite file (see the module docstring)."""

    backend = "sqlite"

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.time, busy_timeout: float = 5.0
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bastion-sqlite"
        )
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._writes = 0

    # -- plumbing -----------------------------------------------------------------------------

    async def _call(self, job: Callable[[sqlite3.Connection, float], T], write: bool) -> T:
        """Run `job(connection, now)` on the worker thread, in one BEGIN IMMEDIATE transaction
        when `write`; SQLite failures become StoreUnavailable."""
        if self._executor is None:
            raise StoreUnavailable(f"SQLite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, job, write)

    def _guarded(self, job: Callable[[sqlite3.Connection, float], T], write: bool) -> T:
        """The worker-thread half of `_call`: (re)open, run, commit or roll back, translate."""
        try:
            if self._conn is None:
                self._conn = self._open()
            conn, now = self._conn, self._clock()
            if not write:
                return job(conn, now)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = job(conn, now)
                self._writes += 1
                if self._writes % PURGE_EVERY == 0:
                    for table in ("records", "counters", "locks"):
                        conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            return result
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # a bug, not an outage
        except sqlite3.DatabaseError as exc:  # OperationalError included
            self._drop()  # reopen on the next call: the file may come back
            raise StoreUnavailable(self._explain(exc)) from exc

    async def _sql(self, sql: str, *params: object, write: bool = True) -> tuple[list[Any], int]:
        """Run one statement (`NOW` in `params`: the clock's reading); (rows, rowcount)."""

        def job(conn: sqlite3.Connection, now: float) -> tuple[list[Any], int]:
            cursor = conn.execute(sql, [now if p is NOW else p for p in params])
            return cursor.fetchall(), cursor.rowcount

        return await self._call(job, write)

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        """A message for StoreUnavailable naming the file and the likely cause."""
        text = str(exc)
        where = f"SQLite store {self.path}"
        if "locked" in text or "busy" in text:
            return f"{where}: still locked by another process after {self._busy_timeout}s ({text})"
        if "unable to open" in text:
            hint = "does its directory exist, and is it writable?"
            return f"{where}: cannot open the file; {hint} ({text})"
        if "not a database" in text or "malformed" in text:
            return f"{where}: the file is not a SQLite database or is corrupt ({text})"
        return f"{where}: unusable ({text})"

    def _open(self) -> sqlite3.Connection:
        """Connect, switch to WAL and apply pending migrations (worker thread)."""
        conn = sqlite3.connect(  # `timeout` is SQLite's busy timeout
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL; retried, as the switch answers "locked" at once (no busy
        handler) while another process opens the same new file."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                if mode != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Apply the migrations this file lacks, all in one transaction (worker thread)."""

        def current() -> int:
            known = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            if conn.execute(known).fetchone() is None:
                return 0
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

        if current() >= len(MIGRATIONS):
            return  # up to date: no write lock needed to open
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            done = current()  # again under the lock: another process may have migrated
            for number, script in enumerate(MIGRATIONS[done:], start=done + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _drop(self) -> None:
        """Close the connection, if open, so the next call reopens (worker thread)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # -- the verbs ----------------------------------------------------------------------------

    async def get(self, ns: str, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        sql = f"SELECT value FROM records WHERE ns = ? AND key = ? AND {LIVE}"
        rows, _ = await self._sql(sql, ns, key, NOW, write=False)
        return bytes(rows[0][0]) if rows else None

    async def put(self, ns: str, key: str, value: bytes, ttl: float | None = None) -> None:
        """Create or replace; `ttl` in seconds (None: no expiry)."""
        sql = "INSERT OR REPLACE INTO records (ns, key, value, expires) VALUES (?, ?, ?, ? + ?)"
        await self._sql(sql, ns, key, value, NOW, ttl)  # NOW + NULL is NULL: no expiry

    async def put_if_absent(
        self, ns: str, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        """Create only when absent (or expired); True when this call created it."""
        sql = (
            "INSERT INTO records (ns, key, value, expires) VALUES (?1, ?2, ?3, ?4 + ?5)"
            " ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,"
            " expires = excluded.expires WHERE records.expires <= ?4 RETURNING 1"
        )
        rows, _ = await self._sql(sql, ns, key, value, NOW, ttl)
        return bool(rows)

    async def delete(self, ns: str, key: str) -> bool:
        """True when a live record was deleted."""
        sql = f"DELETE FROM records WHERE ns = ? AND key = ? AND {LIVE}"
        _, count = await self._sql(sql, ns, key, NOW)
        return count > 0

    async def consume(self, ns: str, key: str) -> bytes | None:
        """Get and delete atomically: exactly one caller gets a given value."""
        sql = f"DELETE FROM records WHERE ns = ? AND key = ? AND {LIVE} RETURNING value"
        rows, _ = await self._sql(sql, ns, key, NOW)
        return bytes(rows[0][0]) if rows else None

    async def incr(self, ns: str, key: str, window: float) -> int:
        """Add 1 to a counter that resets `window` seconds after its first increment."""
        sql = (
            "INSERT INTO counters (ns, key, count, expires) VALUES (?1, ?2, 1, ?3 + ?4)"
            " ON CONFLICT (ns, key) DO UPDATE SET"
            " count = CASE WHEN counters.expires > ?3 THEN counters.count + 1 ELSE 1 END,"
            " expires = CASE WHEN counters.expires > ?3 THEN counters.expires"
            " ELSE excluded.expires END RETURNING count"
        )
        rows, _ = await self._sql(sql, ns, key, NOW, window)
        return int(rows[0][0])

    async def acquire(self, name: str, owner: str, lease: float) -> bool:
        """Take the lock for `owner` for `lease` seconds unless another owner holds it."""
        sql = (
            "INSERT INTO locks (name, owner, expires) VALUES (?1, ?2, ?3 + ?4)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
            " WHERE locks.owner = excluded.owner OR locks.expires <= ?3 RETURNING 1"
        )
        rows, _ = await self._sql(sql, name, owner, NOW, lease)
        return bool(rows)

    async def release(self, name: str, owner: str) -> bool:
        """Release the lock if `owner` holds a live lease; True when released."""
        sql = "DELETE FROM locks WHERE name = ? AND owner = ? AND expires > ?"
        _, count = await self._sql(sql, name, owner, NOW)
        return count > 0

    async def index_add(self, ns: str, key: str, member: str) -> None:
        """Add `member` to the set at (ns, key)."""
        await self._sql("INSERT OR IGNORE INTO members VALUES (?, ?, ?)", ns, key, member)

    async def index_remove(self, ns: str, key: str, member: str) -> None:
        """Remove `member` from the set at (ns, key)."""
        sql = "DELETE FROM members WHERE ns = ? AND key = ? AND member = ?"
        await self._sql(sql, ns, key, member)

    async def members(self, ns: str, key: str) -> set[str]:
        """The set at (ns, key); empty when absent."""
        sql = "SELECT member FROM members WHERE ns = ? AND key = ?"
        rows, _ = await self._sql(sql, ns, key, write=False)
        return {str(row[0]) for row in rows}

    async def bump(self, topic: str) -> int:
        """Record a change under `topic`; the new version."""
        sql = (
            "INSERT INTO versions (topic, version) VALUES (?, 1) ON CONFLICT (topic)"
            " DO UPDATE SET version = version + 1 RETURNING version"
        )
        rows, _ = await self._sql(sql, topic)
        return int(rows[0][0])

    async def version(self, topic: str) -> int:
        """The current version of `topic` (0 when never bumped)."""
        sql = "SELECT version FROM versions WHERE topic = ?"
        rows, _ = await self._sql(sql, topic, write=False)
        return int(rows[0][0]) if rows else 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def check(self) -> tuple[str, float]:
        """(SQLite library version, seconds for one round trip through the worker thread)."""
        started = time.perf_counter()
        await self._sql("SELECT count(*) FROM schema_version", write=False)
        return sqlite3.sqlite_version, time.perf_counter() - started

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread; safe to call twice."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._drop)
        executor.shutdown(wait=True)
