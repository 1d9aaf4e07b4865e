"""SqliteStore: the store contract on a file in tmp_path with a controllable clock, plus WAL,
migrations, several processes on one file and the failures that make it unusable."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bastion.store import StoreUnavailable
from bastion.store.sqlite import MIGRATIONS, SqliteStore
from tests.store.contract import StoreContract

SRC = Path(__file__).resolve().parents[2] / "src"


class TestSqliteContract(StoreContract):
    """The contract on one SQLite file; time moves only when a test advances it."""

    @pytest.fixture(autouse=True)
    def _file(self, tmp_path: Path) -> None:
        self.path = tmp_path / "bastion.db"
        self.now = 1_800_000_000.0

    async def make_store(self) -> SqliteStore:
        return SqliteStore(self.path, clock=lambda: self.now)

    async def advance(self, seconds: float) -> None:
        self.now += seconds


def run_on(path: Path, job: Callable[[SqliteStore], Awaitable[object]]) -> object:
    """Open a store on `path`, await `job(store)`, close it; the job's result."""

    async def main() -> object:
        store = SqliteStore(path)
        try:
            return await job(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def test_wal_is_on_and_synchronous_is_normal(tmp_path: Path) -> None:
    path = tmp_path / "b.db"

    async def main() -> None:
        store = SqliteStore(path)
        try:
            await store.put("ns", "k", b"v")
            assert (await store._sql("PRAGMA synchronous", write=False))[0] == [(1,)]  # NORMAL
            assert (await store._sql("PRAGMA busy_timeout", write=False))[0] == [(5000,)]
        finally:
            await store.aclose()

    asyncio.run(main())
    with sqlite3.connect(path) as conn:  # WAL is a property of the file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_migrations_run_once_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    run_on(path, lambda s: s.put("ns", "k", b"v"))
    run_on(path, lambda s: s.put("ns", "k2", b"v"))
    assert run_on(path, lambda s: s.get("ns", "k")) == b"v"
    conn = sqlite3.connect(path)
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"records", "counters", "locks", "members", "versions", "schema_version"} <= tables
    conn.close()


def test_a_newer_migration_is_applied_to_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.db"
    run_on(path, lambda s: s.put("ns", "k", b"v"))
    extra = "CREATE TABLE extra (x INTEGER); INSERT INTO extra (x) VALUES (42)"
    monkeypatch.setattr("bastion.store.sqlite.MIGRATIONS", [*MIGRATIONS, extra])
    assert run_on(path, lambda s: s.get("ns", "k")) == b"v"
    assert run_on(path, lambda s: s.get("ns", "k")) == b"v"  # opened twice, applied once
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version")][-1] == len(
        MIGRATIONS
    ) + 1
    assert conn.execute("SELECT count(*) FROM extra").fetchone()[0] == 1
    conn.close()


def test_a_failing_migration_leaves_the_schema_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.db"
    run_on(path, lambda s: s.put("ns", "k", b"v"))
    broken = "CREATE TABLE half (x INTEGER); THIS IS NOT SQL"
    monkeypatch.setattr("bastion.store.sqlite.MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StoreUnavailable):
        run_on(path, lambda s: s.get("ns", "k"))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bastion.store.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(Path(sys.argv[1]), busy_timeout=30)
        for _ in range(int(sys.argv[2])):
            await store.incr("ratelimit", "shared", 3600)
            await store.bump("topic")
        await store.aclose()

    asyncio.run(main())
    """
)


def test_processes_sharing_one_file_count_exactly(tmp_path: Path) -> None:
    path, per_worker, workers = tmp_path / "shared.db", 150, 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(per_worker)],
            env={"PYTHONPATH": str(SRC), "PATH": ""},
            stderr=subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    total = per_worker * workers
    assert run_on(path, lambda s: s.incr("ratelimit", "shared", 3600)) == total + 1
    assert run_on(path, lambda s: s.version("topic")) == total


def test_a_missing_directory_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        run_on(tmp_path / "no" / "such" / "dir.db", lambda s: s.get("ns", "k"))


def test_a_directory_as_the_path_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=str(tmp_path)):
        run_on(tmp_path, lambda s: s.put("ns", "k", b"v"))


def test_a_corrupt_file_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreUnavailable, match="not a SQLite database or is corrupt"):
        run_on(path, lambda s: s.get("ns", "k"))
    with pytest.raises(StoreUnavailable):
        run_on(path, lambda s: s.check())


def test_a_lock_held_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    run_on(path, lambda s: s.put("ns", "k", b"v"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:

        async def main() -> None:
            store = SqliteStore(path, busy_timeout=0.05)
            try:
                assert await store.get("ns", "k") == b"v"  # WAL: readers are not blocked
                with pytest.raises(StoreUnavailable, match="locked"):
                    await store.put("ns", "k", b"w")
                holder.execute("ROLLBACK")
                await store.put("ns", "k", b"w")  # usable again once the lock is gone
                assert await store.get("ns", "k") == b"w"
            finally:
                await store.aclose()

        asyncio.run(main())
    finally:
        holder.close()


def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "b.db")
        await store.put("ns", "k", b"v")
        await store.aclose()
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.get("ns", "k")

    asyncio.run(main())


def test_expired_rows_are_purged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bastion.store.sqlite.PURGE_EVERY", 7)  # the 7th write
    now = [1_800_000_000.0]
    path = tmp_path / "b.db"

    async def main() -> None:
        store = SqliteStore(path, clock=lambda: now[0])
        try:
            for i in range(4):
                await store.put("ns", f"gone{i}", b"v", ttl=1)
            await store.acquire("lock", "o", 1)
            now[0] += 10
            await store.put("ns", "kept", b"v")
            await store.put("ns", "kept2", b"v")
        finally:
            await store.aclose()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    keys = {row[0] for row in conn.execute("SELECT key FROM records")}
    assert keys == {"kept", "kept2"}
    assert conn.execute("SELECT count(*) FROM locks").fetchone()[0] == 0
    conn.close()
