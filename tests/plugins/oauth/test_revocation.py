"""Revocation by jti: records in the real SQLite store, and the per-node view polled at most once
a (monotonic) second, dropping the verified-token caches on a change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.plugins.oauth.revocation import NAMESPACE, TOPIC, Revocations, revoke
from bastion.store.base import StoreUnavailable
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import DownStore, FakeClock


class CountingStore:
    """The real store, counting `version` reads."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.backend = store.backend
        self.version_reads = 0

    async def version(self, topic: str) -> int:
        self.version_reads += 1
        await asyncio.sleep(0)
        return await self.store.version(topic)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def watch(store: Any, clock: FakeClock) -> tuple[Revocations, list[int]]:
    drops: list[int] = []
    return Revocations(store, clock, lambda: drops.append(1)), drops


def test_revoke_records_each_jti_and_bumps_once(store: SqliteStore, clock: FakeClock) -> None:
    async def go() -> None:
        assert await store.version(TOPIC) == 0
        assert await revoke(store, ["j1", "j2", "j3"], 100) == 3
        assert await store.version(TOPIC) == 1
        for jti in ("j1", "j2", "j3"):
            assert await store.get(NAMESPACE, jti) is not None

    asyncio.run(go())


def test_revoking_nothing_does_not_bump(store: SqliteStore, clock: FakeClock) -> None:
    async def go() -> None:
        assert await revoke(store, [], 100) == 0
        assert await store.version(TOPIC) == 0

    asyncio.run(go())


def test_revoke_accepts_any_iterable(store: SqliteStore, clock: FakeClock) -> None:
    assert asyncio.run(revoke(store, (j for j in ["a", "b"]), 100)) == 2


def test_is_revoked_until_the_ttl_ends(store: SqliteStore, clock: FakeClock) -> None:
    revocations, _ = watch(store, clock)

    async def go() -> None:
        await revoke(store, ["j1"], 100)
        assert await revocations.is_revoked("j1")
        assert not await revocations.is_revoked("j2")
        clock.advance(99)
        assert await revocations.is_revoked("j1")
        clock.advance(2)
        assert not await revocations.is_revoked("j1")

    asyncio.run(go())


def test_stale_at_most_once_a_second(store: SqliteStore, clock: FakeClock) -> None:
    revocations, _ = watch(store, clock)
    assert revocations.stale()  # never read
    asyncio.run(revocations.refresh())
    assert not revocations.stale()
    clock.mono += 0.999
    assert not revocations.stale()
    clock.mono += 0.001
    assert revocations.stale()


def test_the_wall_clock_does_not_make_it_stale(store: SqliteStore, clock: FakeClock) -> None:
    revocations, _ = watch(store, clock)
    asyncio.run(revocations.refresh())
    clock.now += 3600
    assert not revocations.stale()


def test_a_change_calls_on_change_but_the_first_read_does_not(
    store: SqliteStore, clock: FakeClock
) -> None:
    revocations, drops = watch(store, clock)

    async def go() -> None:
        await revoke(store, ["before"], 100)
        await revocations.refresh()
        assert drops == []  # first read: nothing cached to drop
        await revocations.refresh()
        assert drops == []  # same version
        await revoke(store, ["j1"], 100)
        await revocations.refresh()
        assert drops == [1]
        await revoke(store, ["j2"], 100)
        await revoke(store, ["j3"], 100)
        await revocations.refresh()
        assert drops == [1, 1]

    asyncio.run(go())


def test_concurrent_refreshes_share_one_read(store: SqliteStore, clock: FakeClock) -> None:
    counting = CountingStore(store)
    revocations, _ = watch(counting, clock)

    async def go() -> None:
        await asyncio.gather(*(revocations.refresh() for _ in range(10)))

    asyncio.run(go())
    assert counting.version_reads == 1


def test_store_down_raises_and_stays_stale(clock: FakeClock) -> None:
    revocations, drops = watch(DownStore(), clock)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            asyncio.run(revocations.refresh())
        assert revocations.stale()  # the next request asks again
    with pytest.raises(StoreUnavailable):
        asyncio.run(revocations.is_revoked("j"))
    assert drops == []


def test_concurrent_waiters_all_get_the_outage(clock: FakeClock) -> None:
    revocations, _ = watch(DownStore(), clock)

    async def go() -> list[Any]:
        return await asyncio.gather(
            *(revocations.refresh() for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(go())
    assert all(isinstance(r, StoreUnavailable) for r in results)
