"""RedisStore: the store contract against real servers started on free ports (standalone, a
Sentinel group, a three-master Cluster), plus what only Redis has: a Sentinel failover during
use, a server stopped and restarted under the same store object, the `bastion:` key namespace.

Waits are bounded (no wall-clock assertions); TTLs in the contract run on real time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bastion.errors import ConfigError
from bastion.store import StoreUnavailable
from bastion.store.factory import open_store
from bastion.store.redis import RedisStore, record_key
from bastion.store.url import parse_store_url
from tests.store import redis_servers as rs
from tests.store.contract import StoreContract

T = TypeVar("T")


@pytest.fixture(scope="module")
def standalone() -> Iterator[rs.RedisProcess]:
    group, server = rs.standalone()
    try:
        yield server
    finally:
        group.stop()


@pytest.fixture(scope="module")
def sentinel() -> Iterator[rs.SentinelGroup]:
    group = rs.sentinel_group()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[rs.Cluster]:
    group = rs.cluster()
    try:
        yield group
    finally:
        group.stop()


class RedisContract(StoreContract):
    """The contract on real time: `advance` sleeps."""

    short = 0.25
    url = ""

    async def make_store(self) -> RedisStore:
        return RedisStore.from_url(parse_store_url(self.url))

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TestStandaloneContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, standalone: rs.RedisProcess) -> None:
        self.url = f"redis://127.0.0.1:{standalone.port}/0"


class TestSentinelContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, sentinel: rs.SentinelGroup) -> None:
        self.url = sentinel.url()


class TestClusterContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, cluster: rs.Cluster) -> None:
        self.url = cluster.url()


# -- helpers ----------------------------------------------------------------------------------


async def eventually(what: str, attempt: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    """The first result of `attempt` that does not raise StoreUnavailable, within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await attempt()
        except StoreUnavailable:
            if loop.time() > deadline:
                raise AssertionError(f"{what}: still unavailable after {timeout}s") from None
            await asyncio.sleep(0.1)


def all_verbs(store: RedisStore) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: store.get("ns", "k"),
        lambda: store.put("ns", "k", b"v", ttl=5),
        lambda: store.put_if_absent("ns", "k2", b"v"),
        lambda: store.delete("ns", "k"),
        lambda: store.consume("ns", "k"),
        lambda: store.incr("ns", "c", 60),
        lambda: store.acquire("lock", "me", 5),
        lambda: store.release("lock", "me"),
        lambda: store.index_add("ns", "i", "m"),
        lambda: store.index_remove("ns", "i", "m"),
        lambda: store.members("ns", "i"),
        lambda: store.bump("topic"),
        lambda: store.version("topic"),
        lambda: store.check(),
    ]


# -- Redis only -------------------------------------------------------------------------------


def test_keys_are_namespaced_under_bastion(standalone: rs.RedisProcess) -> None:
    url = f"redis://127.0.0.1:{standalone.port}/7"

    async def main() -> None:
        store = await open_store(url)
        try:
            await store.put("users", "alice", b"v", ttl=60)
            await store.incr("ratelimit", "ip", 60)
            await store.index_add("user_apps", "alice", "app1")
            await store.acquire("refresh", "node-a", 60)
            await store.bump("oidc-rules")
        finally:
            await store.aclose()

    asyncio.run(main())
    keys = rs.cli(standalone.port, "-n", "7", "--raw", "KEYS", "*").split()
    assert len(keys) == 5
    assert all(k.startswith("bastion:") for k in keys), keys
    assert record_key("users", "alice") in keys
    assert "bastion:version:{oidc-rules}" in keys
    assert "bastion:lock:{refresh}" in keys


def test_namespace_and_key_never_collide() -> None:
    assert record_key("a:b", "c") != record_key("a", "b:c")
    assert record_key("a%3Ab", "c") != record_key("a:b", "c")


def test_companions_share_a_cluster_slot(cluster: rs.Cluster) -> None:
    port = cluster.ports[0]
    record = record_key("odd:ns {x}", "{hash}tag")
    slots = {
        rs.cli(port, "CLUSTER", "KEYSLOT", k).strip()
        for k in (record, record + ":n", record + ":set")
    }
    assert len(slots) == 1


def test_stopped_redis_fails_fast_then_reconnects_by_itself() -> None:
    group, server = rs.standalone()
    try:
        store = RedisStore.from_url(parse_store_url(f"redis://127.0.0.1:{server.port}/0"))

        async def before() -> None:
            await store.put("codes", "kept", b"committed")

        async def while_down() -> None:
            for verb in all_verbs(store):
                with pytest.raises(StoreUnavailable):
                    # bounded: a hang would fail here instead of blocking the suite
                    await asyncio.wait_for(verb(), timeout=10)

        async def after() -> None:
            await eventually("redis after restart", lambda: store.get("codes", "none"))
            for verb in all_verbs(store):
                await verb()
            assert await store.put_if_absent("codes", "fresh", b"x") is True
            assert await store.consume("codes", "fresh") == b"x"
            await store.aclose()

        async def main() -> None:
            await before()
            server.stop()
            await while_down()
            await asyncio.to_thread(server.start)  # same port, empty (no persistence)
            await after()

        asyncio.run(main())
    finally:
        group.stop()


@pytest.mark.parametrize("kind", ["standalone", "sentinel"])
def test_idle_connections_the_server_closed_are_replaced(
    kind: str, standalone: rs.RedisProcess, sentinel: rs.SentinelGroup
) -> None:
    """A Redis restart (or `timeout`, or CLIENT KILL) closes the pool's idle connections; the
    next commands get fresh ones instead of failing once each (redis-py #4252 under RESP3)."""
    if kind == "standalone":
        url, port = f"redis://127.0.0.1:{standalone.port}/0", standalone.port
    else:
        url, port = sentinel.url(), sentinel.master_port()

    async def burst(store: RedisStore) -> None:
        # concurrent: the pool holds one connection per command in flight
        await asyncio.gather(*(store.get("ns", f"k{i}") for i in range(8)))

    async def main() -> None:
        store = await open_store(url)
        assert isinstance(store, RedisStore)
        try:
            await burst(store)
            killed = rs.cli(port, "CLIENT", "KILL", "TYPE", "normal").strip()
            assert int(killed) >= 8, killed  # this store's idle ones, at least
            await asyncio.sleep(0.3)  # the FINs reach the client
            await burst(store)  # StoreUnavailable here is the bug
            await burst(store)
        finally:
            await store.aclose()

    asyncio.run(main())


def test_unavailable_message_never_includes_the_password() -> None:
    port = rs.free_port()  # nothing listens there

    async def main() -> str:
        store = await open_store(f"redis://bastion:s3cret-pw@127.0.0.1:{port}/0")
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.get("ns", "k")
            return str(caught.value)
        finally:
            await store.aclose()

    message = asyncio.run(main())
    assert "s3cret-pw" not in message
    assert "unavailable" in message


def test_unreachable_sentinels_and_cluster_are_unavailable() -> None:
    port = rs.free_port()

    async def main(url: str) -> None:
        store = await open_store(url)
        try:
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.put("ns", "k", b"v"), timeout=15)
        finally:
            await store.aclose()

    asyncio.run(main(f"redis+sentinel://127.0.0.1:{port}/mymaster/0"))
    asyncio.run(main(f"redis+cluster://127.0.0.1:{port}"))


def test_sentinel_failover_during_use(sentinel: rs.SentinelGroup) -> None:
    """Runs last in this module: the group's master changes."""
    old_master = sentinel.master_port()

    async def main() -> None:
        store = await open_store(sentinel.url())
        try:
            await store.put("codes", "before-failover", b"committed")
            assert await store.incr("ratelimit", "ip", 60) == 1
            # the replica has it before the failover starts
            replica = next(
                p.port for p in (sentinel.master, sentinel.replica) if p.port != old_master
            )
            key = record_key("codes", "before-failover")
            await asyncio.to_thread(
                rs.wait_for,
                "replication",
                lambda: rs.cli(replica, "--raw", "GET", key).strip() == "committed",
            )
            out = rs.cli(sentinel.sentinels[0], "SENTINEL", "failover", "mymaster")
            assert "OK" in out, out
            await asyncio.to_thread(
                rs.wait_for, "a new master", lambda: sentinel.master_port() != old_master, 20
            )
            new_master = sentinel.master_port()
            # the same store object follows the new master, even before the old one is demoted
            # (it asks the sentinels at most once a second): its writes land on the new master
            value = await eventually(
                "the new master", lambda: store.get("codes", "before-failover")
            )
            assert value == b"committed"
            # bound: under the ~10 s Sentinel takes to demote the old master (its fixed
            # status-check period), so a store that only noticed the demotion fails here
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 6
            for attempt in range(1000):
                key = f"after-{attempt}"
                await eventually("a write", lambda key=key: store.put("codes", key, b"x"))
                stored = rs.cli(new_master, "--raw", "GET", record_key("codes", key)).strip()
                if stored == "x":
                    break
                assert loop.time() < deadline, "writes still go to the old master"
                await asyncio.sleep(0.2)
            assert await store.get("codes", key) == b"x"
            assert await store.incr("ratelimit", "ip", 60) == 2
            assert await store.consume("codes", "before-failover") == b"committed"
        finally:
            await store.aclose()

    asyncio.run(main())
    assert sentinel.master_port() != old_master


# -- the factory --------------------------------------------------------------------------------


def test_open_store_picks_the_backend(tmp_path: Path, standalone: rs.RedisProcess) -> None:
    async def main() -> None:
        sqlite = await open_store(f"sqlite:///{tmp_path / 'b.db'}")
        redis = await open_store(f"redis://127.0.0.1:{standalone.port}/0")
        try:
            assert (sqlite.backend, redis.backend) == ("sqlite", "redis")
            assert isinstance(redis, RedisStore)
        finally:
            await sqlite.aclose()
            await redis.aclose()

    asyncio.run(main())


def test_open_store_rejects_a_bad_url() -> None:
    with pytest.raises(ConfigError) as caught:
        asyncio.run(open_store("memcached://h", field_path="gateway.store"))
    assert [path for path, _ in caught.value.problems] == ["gateway.store"]
