"""FailureLimit: failed client authentications counted in the real SQLite store, per client id
and per address; a locked key gets Retry-After until its window ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.plugins.oauth.lockout import LOCKS, FailureLimit
from bastion.plugins.oauth.schema import Lockout
from bastion.store.base import StoreUnavailable
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import DownStore, FakeClock


def limit(store: Any, clock: FakeClock, max_failures: int = 3, window: float = 60) -> FailureLimit:
    return FailureLimit(store, Lockout(max_failures=max_failures, window=window), clock)


def fail(lim: FailureLimit, times: int, client_id: str = "id", ip: str = "10.0.0.1") -> None:
    async def go() -> None:
        for _ in range(times):
            await lim.failed(client_id, ip)

    asyncio.run(go())


def retry(lim: FailureLimit, client_id: str = "id", ip: str = "10.0.0.1") -> int | None:
    return asyncio.run(lim.retry_after(client_id, ip))


def test_keys() -> None:
    assert FailureLimit.keys("abc", "10.0.0.1") == ("oauth:id:abc", "oauth:ip:10.0.0.1")


@pytest.mark.parametrize(("max_failures", "failures", "locked"), [(3, 2, False), (3, 3, True),
                         (1, 1, True), (1, 0, False), (10, 9, False), (10, 10, True)])  # fmt: skip
def test_locks_at_max_failures(
    store: SqliteStore, clock: FakeClock, max_failures: int, failures: int, locked: bool
) -> None:
    lim = limit(store, clock, max_failures)
    fail(lim, failures)
    assert retry(lim) == (60 if locked else None)


def test_per_client_id(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock)
    for ip in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        fail(lim, 1, "victim", ip)
    assert retry(lim, "victim", "9.9.9.9") == 60
    assert retry(lim, "other", "9.9.9.9") is None


def test_per_address(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock)
    for client_id in ("a", "b", "c"):
        fail(lim, 1, client_id, "6.6.6.6")
    assert retry(lim, "fresh", "6.6.6.6") == 60
    assert retry(lim, "fresh", "7.7.7.7") is None


def test_retry_after_counts_down_and_the_lock_ends(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock, window=30)
    fail(lim, 3)
    assert retry(lim) == 30
    clock.advance(10.2)
    assert retry(lim) == 20  # rounded up
    clock.advance(19.7)
    assert retry(lim) == 1  # never 0 while locked
    clock.advance(0.2)
    assert retry(lim) is None


def test_the_longest_lock_wins(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock)
    fail(lim, 3, "a", "1.1.1.1")  # locks id a and address 1.1.1.1
    clock.advance(30)
    fail(lim, 3, "b", "2.2.2.2")
    assert retry(lim, "a", "2.2.2.2") == 60  # address 2.2.2.2 locked later
    assert retry(lim, "a", "3.3.3.3") == 30


def test_the_count_resets_after_the_window(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock)
    fail(lim, 2)
    clock.advance(61)
    fail(lim, 2)
    assert retry(lim) is None
    fail(lim, 1)
    assert retry(lim) == 60


def test_after_the_lock_failures_count_anew(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock)
    fail(lim, 3)
    clock.advance(61)
    assert retry(lim) is None
    fail(lim, 2)
    assert retry(lim) is None
    fail(lim, 1)
    assert retry(lim) == 60


def test_shared_by_two_limits_on_one_store(store: SqliteStore, clock: FakeClock) -> None:
    node_a, node_b = limit(store, clock), limit(store, clock)
    fail(node_a, 2)
    fail(node_b, 1)
    assert retry(node_a) == retry(node_b) == 60


def test_unparsable_lock_value_locks_for_the_window(store: SqliteStore, clock: FakeClock) -> None:
    lim = limit(store, clock, window=45)
    asyncio.run(store.put(LOCKS, "oauth:id:id", b"garbage", ttl=45))
    assert retry(lim) == 45


def test_store_down(clock: FakeClock) -> None:
    lim = limit(DownStore(), clock)
    with pytest.raises(StoreUnavailable):
        retry(lim)
    with pytest.raises(StoreUnavailable):
        fail(lim, 1)
