"""Fixtures of the `oauth` plugin tests: a fake clock and a real SQLite store driven by it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "s.db", clock=clock.time)
    yield sqlite
    asyncio.run(sqlite.aclose())
