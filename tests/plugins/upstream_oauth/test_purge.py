"""Purges on every node: publish_purge and PurgeWatch on the real SQLite store with a fake clock,
and route_scopes / purge_under resolving the cache keys of a route, of domain rules and of the
instance config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bastion.config.model import Config
from bastion.plugins.upstream_oauth.cache import NAMESPACE as TOKENS
from bastion.plugins.upstream_oauth.cache import cache_key
from bastion.plugins.upstream_oauth.purge import (
    NAMESPACE,
    RECORD,
    TOPIC,
    PurgeWatch,
    publish_purge,
    purge_under,
    route_scopes,
)
from bastion.plugins.upstream_oauth.schema import OAuthSettings
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import FakeClock

ENDPOINT = "https://idp.example.com/token"


def oauth(client_id: str) -> dict[str, Any]:
    return {"token_endpoint": ENDPOINT, "client_id": client_id, "client_secret": "s"}


def key_of(client_id: str) -> str:
    return cache_key(OAuthSettings.model_validate(oauth(client_id)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "s.db", clock=clock.time)
    yield sqlite
    asyncio.run(sqlite.aclose())


# --- publish_purge and PurgeWatch -------------------------------------------------------------


class Node:
    """One node's watch and what it was told to drop."""

    def __init__(self, store: SqliteStore, clock: FakeClock) -> None:
        self.clock = clock
        self.drops: list[list[str] | None] = []
        self.watch = PurgeWatch(store, clock, self.drops.append)

    async def look(self) -> None:
        """What a request does: re-read the topic once the last read is a second old."""
        if self.watch.stale():
            await self.watch.refresh()


def test_publish_writes_the_record_and_bumps_the_topic(store: SqliteStore) -> None:
    async def go() -> tuple[bytes | None, int]:
        await publish_purge(store, ["k1", "k2"])
        return await store.get(NAMESPACE, RECORD), await store.version(TOPIC)

    record, version = asyncio.run(go())
    assert record is not None and orjson.loads(record) == {"keys": ["k1", "k2"]}
    assert version == 1


def test_the_first_look_drops_nothing(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await publish_purge(store, None)  # from before this node started
        await publish_purge(store, ["k1"])
        await node.look()
        assert node.watch.version == 2

    asyncio.run(go())
    assert node.drops == []


def test_a_purge_of_keys_drops_those_keys(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await node.look()
        await publish_purge(store, ["k1", "k2"])
        await node.look()  # within the poll interval: the last read stands
        assert node.drops == []
        clock.advance(1.0)
        await node.look()
        assert node.drops == [["k1", "k2"]]
        clock.advance(1.0)
        await node.look()  # no change: nothing more

    asyncio.run(go())
    assert node.drops == [["k1", "k2"]]


def test_a_purge_of_all_drops_all(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await node.look()
        await publish_purge(store, None)
        clock.advance(1.0)
        await node.look()

    asyncio.run(go())
    assert node.drops == [None]


def test_two_purges_between_looks_drop_all(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await node.look()
        await publish_purge(store, ["k1"])
        await publish_purge(store, ["k2"])  # the record keeps only this one
        clock.advance(1.0)
        await node.look()

    asyncio.run(go())
    assert node.drops == [None]


def test_every_node_sees_each_purge(store: SqliteStore, clock: FakeClock) -> None:
    nodes = [Node(store, clock) for _ in range(3)]

    async def go() -> None:
        for node in nodes:
            await node.look()
        await publish_purge(store, ["k1"])
        clock.advance(1.0)
        for node in nodes:
            await node.look()
        await publish_purge(store, ["k2"])
        clock.advance(1.0)
        for node in nodes:
            await node.look()

    asyncio.run(go())
    assert [n.drops for n in nodes] == [[["k1"], ["k2"]]] * 3


def test_concurrent_requests_share_one_read(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await node.look()
        await publish_purge(store, ["k1"])
        clock.advance(1.0)
        await asyncio.gather(*(node.watch.refresh() for _ in range(10)))

    asyncio.run(go())
    assert node.drops == [["k1"]]


def test_a_missing_or_odd_record_drops_all(store: SqliteStore, clock: FakeClock) -> None:
    node = Node(store, clock)

    async def go() -> None:
        await node.look()
        await store.put(NAMESPACE, RECORD, orjson.dumps({"keys": "k1"}))
        await store.bump(TOPIC)
        clock.advance(1.0)
        await node.look()
        await store.delete(NAMESPACE, RECORD)
        await store.bump(TOPIC)
        clock.advance(1.0)
        await node.look()

    asyncio.run(go())
    assert node.drops == [None, None]


# --- route_scopes and purge_under -------------------------------------------------------------


def make_config(tmp_path: Path, plugin: dict[str, Any] | None, **route_plugins: Any) -> Config:
    routes = [
        {"name": name, "path": f"/{name}", "service": "s", "plugins": route_plugins.get(name, {})}
        for name in ("api", "billing", "plain")
    ]
    data: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path / 's.db'}",
        "services": [{"name": "s", "url": "http://127.0.0.1:9"}],
        "routes": routes,
        "plugins": {} if plugin is None else {"upstream-oauth": plugin},
    }
    return Config.model_validate(data)


def full(tmp_path: Path, **instance: Any) -> Config:
    """The instance config, a _match_route_ rule for api, two domain rules, and billing's own."""
    plugin = {
        "oauth": oauth("instance"),
        **instance,
        "_rules_": [
            {"_match_route_": ["api"], "oauth": oauth("api-rule")},
            {"_match_domain_": ["*.example.com"], "oauth": oauth("domain-1")},
            {
                "_match_domain_": ["shop.test"],
                "oauth": oauth("domain-2"),
                "cache": {"strategy": "redis"},
            },
        ],
    }
    own = {"upstream-oauth": {"oauth": oauth("billing-own")}}
    return make_config(tmp_path, plugin, billing=own)


def ids(scopes: list[Any]) -> list[str]:
    return sorted(s.oauth.client_id for s in scopes)


def test_a_route_with_its_own_rule_has_only_that_rule(tmp_path: Path) -> None:
    config = full(tmp_path)
    assert ids(route_scopes(config, "api")) == ["api-rule"]
    assert ids(route_scopes(config, "billing")) == ["billing-own"]


def test_a_route_without_a_rule_has_the_domain_rules_and_the_instance(tmp_path: Path) -> None:
    assert ids(route_scopes(full(tmp_path), "plain")) == ["domain-1", "domain-2", "instance"]


def test_every_config_when_no_route_is_named(tmp_path: Path) -> None:
    assert ids(route_scopes(full(tmp_path), None)) == [
        "api-rule",
        "billing-own",
        "domain-1",
        "domain-2",
        "instance",
    ]


def test_the_instance_alone(tmp_path: Path) -> None:
    config = make_config(tmp_path, {"oauth": oauth("instance")})
    assert ids(route_scopes(config, "api")) == ["instance"]
    assert ids(route_scopes(config, None)) == ["instance"]


def test_an_unknown_route(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown route 'nope'"):
        route_scopes(full(tmp_path), "nope")


def test_a_config_without_the_plugin(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no upstream-oauth plugin"):
        route_scopes(make_config(tmp_path, None), None)
    with pytest.raises(ValueError, match="no upstream-oauth plugin"):
        route_scopes(make_config(tmp_path, None), "api")


def test_purge_under_a_route_publishes_its_keys(
    tmp_path: Path, store: SqliteStore, clock: FakeClock
) -> None:
    node = Node(store, clock)

    async def go() -> int:
        await node.look()
        count = await purge_under(full(tmp_path), "api", store)
        clock.advance(1.0)
        await node.look()
        return count

    assert asyncio.run(go()) == 1
    assert node.drops == [[key_of("api-rule")]]


def test_purge_under_a_plain_route_covers_domains_and_instance(
    tmp_path: Path, store: SqliteStore, clock: FakeClock
) -> None:
    node = Node(store, clock)

    async def go() -> int:
        await node.look()
        count = await purge_under(full(tmp_path), "plain", store)
        clock.advance(1.0)
        await node.look()
        return count

    assert asyncio.run(go()) == 3
    assert node.drops == [sorted(key_of(c) for c in ("domain-1", "domain-2", "instance"))]


def test_purge_under_everything_publishes_all(
    tmp_path: Path, store: SqliteStore, clock: FakeClock
) -> None:
    node = Node(store, clock)

    async def go() -> int:
        await node.look()
        count = await purge_under(full(tmp_path), None, store)
        clock.advance(1.0)
        await node.look()
        return count

    assert asyncio.run(go()) == 5
    assert node.drops == [None]


def test_identical_settings_count_once(tmp_path: Path, store: SqliteStore) -> None:
    plugin = {
        "oauth": oauth("same"),
        "_rules_": [{"_match_route_": ["api"], "oauth": oauth("same")}],
    }
    assert asyncio.run(purge_under(make_config(tmp_path, plugin), None, store)) == 1


def test_purge_under_deletes_shared_copies_in_the_gateways_store(
    tmp_path: Path, store: SqliteStore
) -> None:
    config = full(tmp_path)
    shared, local = key_of("domain-2"), key_of("instance")

    async def go() -> tuple[bytes | None, bytes | None]:
        await store.put(TOKENS, shared, b"{}")
        await store.put(TOKENS, local, b"{}")  # memory strategy: not the store's to delete
        await purge_under(config, "plain", store)
        return await store.get(TOKENS, shared), await store.get(TOKENS, local)

    assert asyncio.run(go()) == (None, b"{}")


def test_purge_under_opens_the_configured_store(tmp_path: Path) -> None:
    config = make_config(tmp_path, {"oauth": oauth("instance"), "cache": {"strategy": "redis"}})

    async def go() -> tuple[int, bytes | None, int]:
        opened = SqliteStore(tmp_path / "s.db")
        try:
            await opened.put(TOKENS, key_of("instance"), b"{}")
            count = await purge_under(config, None)  # opens and closes config.store itself
            return count, await opened.get(TOKENS, key_of("instance")), await opened.version(TOPIC)
        finally:
            await opened.aclose()

    assert asyncio.run(go()) == (1, None, 1)
