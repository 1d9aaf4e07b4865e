"""The Store contract: one suite of behaviours every backend must show, run per backend.

A backend's test module subclasses `StoreContract` under a `Test...` name and provides:

- `async make_store()`: a new Store instance on the backend under test. Every call within one
  test must reach the same data (two instances stand for two gateway nodes or workers).
- `async advance(seconds)`: let `seconds` pass for TTLs, windows and leases; a controllable clock
  for SQLite, a real `asyncio.sleep` for Redis (which then may raise `short`, the TTL the suite
  uses, to keep clear of its own latency).

The tests are plain sync pytest tests that run their body with `asyncio.run`; every store opened
through `self.open()` is closed at the end. Names carry a per-test tag so that a backend shared
between tests (one Redis server) needs no flush between them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from bastion.store.base import Store

ODD_KEYS = [
    "a:b:c",
    "with space",
    "üñí©ødé ✓ 鍵",
    "slash/and\\back",
    "*?[glob]",
    "{hash}tag",
    "'; DROP TABLE records; --",
    "tab\tnew\nline",
    "%s %d ?",
    "x" * 400,
]


class StoreContract:
    """The behaviours every Store backend shares; subclass with make_store and advance."""

    #: the TTL / window / lease the expiry tests use, in seconds
    short: float = 0.5

    async def make_store(self) -> Store:
        """A new instance on the backend under test (same data for every call in one test)."""
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass for the backend's expiries."""
        raise NotImplementedError

    # -- harness ------------------------------------------------------------------------------

    def run(self, body: Callable[[Store], Awaitable[None]]) -> None:
        """Run `body(store)` in a fresh event loop; close every store opened meanwhile."""
        self.tag = uuid.uuid4().hex[:10]
        self._opened: list[Store] = []

        async def main() -> None:
            try:
                await body(await self.open())
            finally:
                for store in self._opened:
                    await store.aclose()

        asyncio.run(main())

    async def open(self) -> Store:
        """Another instance on the same backend, closed by `run`."""
        store = await self.make_store()
        self._opened.append(store)
        return store

    def n(self, name: str) -> str:
        """`name` made unique to this test."""
        return f"{name}-{self.tag}"

    # -- records ------------------------------------------------------------------------------

    def test_is_a_store(self) -> None:
        async def body(store: Store) -> None:
            assert isinstance(store, Store)
            assert store.backend in ("sqlite", "redis")

        self.run(body)

    def test_put_get_delete(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("users")
            assert await store.get(ns, "alice") is None
            await store.put(ns, "alice", b"v1")
            assert await store.get(ns, "alice") == b"v1"
            await store.put(ns, "alice", b"v2")
            assert await store.get(ns, "alice") == b"v2"
            assert await store.delete(ns, "alice") is True
            assert await store.get(ns, "alice") is None
            assert await store.delete(ns, "alice") is False

        self.run(body)

    def test_get_respects_ttl(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("sessions")
            await store.put(ns, "s", b"live", ttl=self.short)
            await store.put(ns, "forever", b"kept")
            assert await store.get(ns, "s") == b"live"
            await self.advance(self.short * 2)
            assert await store.get(ns, "s") is None
            assert await store.get(ns, "forever") == b"kept"

        self.run(body)

    def test_put_without_ttl_clears_an_earlier_ttl(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("cache")
            await store.put(ns, "k", b"short", ttl=self.short)
            await store.put(ns, "k", b"long")
            await self.advance(self.short * 2)
            assert await store.get(ns, "k") == b"long"

        self.run(body)

    def test_put_if_absent(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("codes")
            assert await store.put_if_absent(ns, "k", b"first") is True
            assert await store.put_if_absent(ns, "k", b"second") is False
            assert await store.get(ns, "k") == b"first"

        self.run(body)

    def test_put_if_absent_over_an_expired_record(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("codes")
            await store.put(ns, "k", b"old", ttl=self.short)
            assert await store.put_if_absent(ns, "k", b"blocked") is False
            await self.advance(self.short * 2)
            assert await store.put_if_absent(ns, "k", b"new") is True
            assert await store.get(ns, "k") == b"new"

        self.run(body)

    def test_put_if_absent_race_has_one_winner(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            ns = self.n("codes")
            calls = [
                (store if i % 2 else other).put_if_absent(ns, "k", f"v{i}".encode())
                for i in range(20)
            ]
            won = await asyncio.gather(*calls)
            assert won.count(True) == 1
            assert await other.get(ns, "k") == f"v{won.index(True)}".encode()

        self.run(body)

    def test_delete_of_an_expired_record_is_false(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("sessions")
            await store.put(ns, "k", b"v", ttl=self.short)
            await self.advance(self.short * 2)
            assert await store.delete(ns, "k") is False

        self.run(body)

    def test_consume_once(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("codes")
            await store.put(ns, "code", b"grant", ttl=60)
            assert await store.consume(ns, "code") == b"grant"
            assert await store.consume(ns, "code") is None
            assert await store.get(ns, "code") is None
            assert await store.consume(ns, "never") is None

        self.run(body)

    def test_consume_of_an_expired_record_is_none(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("codes")
            await store.put(ns, "code", b"grant", ttl=self.short)
            await self.advance(self.short * 2)
            assert await store.consume(ns, "code") is None

        self.run(body)

    def test_concurrent_consume_has_exactly_one_winner(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            ns = self.n("codes")
            await store.put(ns, "code", b"grant", ttl=60)
            results = await asyncio.gather(
                *((store if i % 2 else other).consume(ns, "code") for i in range(50))
            )
            assert [r for r in results if r is not None] == [b"grant"]

        self.run(body)

    def test_binary_values(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("blobs")
            values = {
                "all": bytes(range(256)),
                "empty": b"",
                "nul": b"\x00" * 1000,
                "big": bytes(range(256)) * 1024,
            }
            for key, value in values.items():
                await store.put(ns, key, value)
            for key, value in values.items():
                got = await store.get(ns, key)
                assert type(got) is bytes and got == value, key
            assert await store.consume(ns, "nul") == b"\x00" * 1000

        self.run(body)

    def test_keys_with_odd_characters(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("odd:ns {x}")
            for i, key in enumerate(ODD_KEYS):
                await store.put(ns, key, str(i).encode())
                await store.index_add(ns, key, key)
            for i, key in enumerate(ODD_KEYS):
                assert await store.get(ns, key) == str(i).encode(), key
                assert await store.members(ns, key) == {key}, key
            assert await store.get(ns, "a:b") is None
            assert await store.get(ns, "*") is None

        self.run(body)

    def test_namespaces_are_isolated(self) -> None:
        async def body(store: Store) -> None:
            a, b = self.n("a"), self.n("b")
            await store.put(a, "k", b"in a")
            assert await store.get(b, "k") is None
            assert await store.consume(b, "k") is None
            assert await store.delete(b, "k") is False
            assert await store.put_if_absent(b, "k", b"in b") is True
            assert await store.get(a, "k") == b"in a"
            await store.index_add(a, "k", "m")
            assert await store.members(b, "k") == set()
            assert await store.incr(a, "k", 60) == 1
            assert await store.incr(b, "k", 60) == 1

        self.run(body)

    # -- counters -----------------------------------------------------------------------------

    def test_incr_within_the_window(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("ratelimit")
            assert [await store.incr(ns, "ip", 60) for _ in range(5)] == [1, 2, 3, 4, 5]
            assert await store.incr(ns, "other", 60) == 1

        self.run(body)

    def test_incr_resets_after_the_window(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("ratelimit")
            assert await store.incr(ns, "ip", self.short) == 1
            assert await store.incr(ns, "ip", self.short) == 2
            await self.advance(self.short * 2)
            assert await store.incr(ns, "ip", self.short) == 1

        self.run(body)

    def test_concurrent_incr_counts_exactly(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            ns = self.n("ratelimit")
            counts = await asyncio.gather(
                *((store if i % 2 else other).incr(ns, "ip", 60) for i in range(50))
            )
            assert sorted(counts) == list(range(1, 51))
            assert await store.incr(ns, "ip", 60) == 51

        self.run(body)

    # -- locks --------------------------------------------------------------------------------

    def test_lock_is_exclusive(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            name = self.n("refresh")
            assert await store.acquire(name, "node-a", 60) is True
            assert await other.acquire(name, "node-b", 60) is False
            assert await store.release(name, "node-a") is True
            assert await other.acquire(name, "node-b", 60) is True

        self.run(body)

    def test_concurrent_acquire_has_one_winner(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            name = self.n("refresh")
            won = await asyncio.gather(
                *((store if i % 2 else other).acquire(name, f"o{i}", 60) for i in range(20))
            )
            assert won.count(True) == 1

        self.run(body)

    def test_same_owner_reacquire_extends_the_lease(self) -> None:
        async def body(store: Store) -> None:
            name = self.n("refresh")
            assert await store.acquire(name, "node-a", self.short) is True
            await self.advance(self.short * 0.6)
            assert await store.acquire(name, "node-a", self.short) is True
            await self.advance(self.short * 0.6)  # past the first lease, inside the second
            assert await store.acquire(name, "node-b", self.short) is False

        self.run(body)

    def test_release_by_a_non_owner_fails(self) -> None:
        async def body(store: Store) -> None:
            name = self.n("refresh")
            assert await store.release(name, "nobody") is False
            assert await store.acquire(name, "node-a", 60) is True
            assert await store.release(name, "node-b") is False
            assert await store.acquire(name, "node-b", 60) is False
            assert await store.release(name, "node-a") is True
            assert await store.release(name, "node-a") is False

        self.run(body)

    def test_lease_expiry_frees_the_lock(self) -> None:
        async def body(store: Store) -> None:
            name = self.n("refresh")
            assert await store.acquire(name, "dead-node", self.short) is True
            await self.advance(self.short * 2)
            assert await store.release(name, "dead-node") is False  # its lease has ended
            assert await store.acquire(name, "node-b", 60) is True
            assert await store.release(name, "dead-node") is False

        self.run(body)

    # -- indexes and versions -----------------------------------------------------------------

    def test_index_add_remove_members(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("user_apps")
            assert await store.members(ns, "alice") == set()
            await store.index_add(ns, "alice", "app1")
            await store.index_add(ns, "alice", "app2")
            await store.index_add(ns, "alice", "app1")
            await store.index_add(ns, "bob", "app3")
            assert await store.members(ns, "alice") == {"app1", "app2"}
            await store.index_remove(ns, "alice", "app1")
            await store.index_remove(ns, "alice", "missing")
            await store.index_remove(ns, "nobody", "missing")
            assert await store.members(ns, "alice") == {"app2"}
            await store.index_remove(ns, "alice", "app2")
            assert await store.members(ns, "alice") == set()
            assert await store.members(ns, "bob") == {"app3"}

        self.run(body)

    def test_members_are_unaffected_by_record_expiry(self) -> None:
        async def body(store: Store) -> None:
            ns = self.n("families")
            await store.put(ns, "f1", b"family", ttl=self.short)
            await store.index_add(ns, "f1", "token-a")
            await self.advance(self.short * 2)
            assert await store.get(ns, "f1") is None
            assert await store.members(ns, "f1") == {"token-a"}

        self.run(body)

    def test_bump_and_version_across_instances(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            topic = self.n("oidc-rules")
            assert await store.version(topic) == 0
            assert await store.bump(topic) == 1
            assert await other.version(topic) == 1
            assert await other.bump(topic) == 2
            assert await store.version(topic) == 2
            assert await store.version(self.n("other-topic")) == 0

        self.run(body)

    def test_concurrent_bumps_count_exactly(self) -> None:
        async def body(store: Store) -> None:
            other = await self.open()
            topic = self.n("revocations")
            versions = await asyncio.gather(
                *((store if i % 2 else other).bump(topic) for i in range(30))
            )
            assert sorted(versions) == list(range(1, 31))
            assert await other.version(topic) == 30

        self.run(body)

    # -- lifecycle ----------------------------------------------------------------------------

    def test_check_reports_a_version_and_a_latency(self) -> None:
        async def body(store: Store) -> None:
            version, latency = await store.check()
            assert isinstance(version, str) and version
            assert isinstance(latency, float) and latency >= 0

        self.run(body)

    def test_aclose_twice_is_fine(self) -> None:
        async def body(store: Store) -> None:
            extra = await self.make_store()
            await extra.put(self.n("x"), "k", b"v")
            await extra.aclose()
            await extra.aclose()
            assert await store.get(self.n("x"), "k") == b"v"

        self.run(body)
