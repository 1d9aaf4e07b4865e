"""Purging cached upstream tokens on every node: by cache key, or all (SPEC §11).

`bastion upstream-oauth purge` and the admin API write one purge record in the gateway's store and
bump the `upstream-oauth-purge` topic; each node sees the topic move (store/watch.py, at most a
second later) and drops its copies; shared copies (the `redis` strategy) are deleted at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from bastion.gateway.clock import Clock
from bastion.store.base import Store
from bastion.store.watch import TopicWatch

if TYPE_CHECKING:
    from bastion.config.model import Config
    from bastion.plugins.upstream_oauth.schema import UpstreamOAuthConfig

NAMESPACE = "upstream-oauth"
RECORD = "purge"
TOPIC = "upstream-oauth-purge"


async def publish_purge(store: Store, keys: list[str] | None) -> None:
    """Ask every node to drop the tokens of `keys` (None: every token)."""
    await store.put(NAMESPACE, RECORD, orjson.dumps({"keys": keys}))
    await store.bump(TOPIC)


class PurgeWatch(TopicWatch):
    """Follows the purge topic; `drop(keys or None)` is called for each purge seen."""

    def __init__(
        self, store: Store, clock: Clock, drop: Callable[[list[str] | None], None]
    ) -> None:
        super().__init__(store, TOPIC, clock)
        self.drop = drop

    async def changed(self, previous: int | None) -> None:
        if previous is None:
            return  # the first look: purges from before this node started do not concern it
        version = await self.store.version(TOPIC)
        data = await self.store.get(NAMESPACE, RECORD)
        keys = orjson.loads(data).get("keys") if data is not None else None
        # more than one purge since the last look: the record holds only the last one
        self.drop(keys if version == previous + 1 and isinstance(keys, list) else None)


def route_scopes(config: Config, route: str | None) -> list[UpstreamOAuthConfig]:
    """The upstream-oauth configs that may serve `route` (every config when None).
    ValueError for an unknown route or a config without the plugin."""
    from bastion.plugins.rules import resolve_rules
    from bastion.plugins.upstream_oauth.schema import UpstreamOAuthConfig

    rules = resolve_rules(config).get("upstream-oauth")
    if rules is None:
        raise ValueError("the config has no upstream-oauth plugin")
    if route is not None and route not in {r.name for r in config.routes}:
        raise ValueError(f"unknown route {route!r}")
    if route is not None and route in rules.route_rules:
        candidates = [rules.route_rules[route]]
    else:
        candidates = [*rules.domain_rules.values()]
        if rules.instance_applies:
            candidates.append(rules.instance)
        if route is None:
            candidates.extend(rules.route_rules.values())
    return [c for c in candidates if isinstance(c, UpstreamOAuthConfig) and c.oauth is not None]


async def purge_under(config: Config, route: str | None, store: Store | None = None) -> int:
    """Purge the tokens of `route` (None: all) on every node; the number of cache keys."""
    from bastion.plugins.upstream_oauth.cache import NAMESPACE as TOKENS
    from bastion.plugins.upstream_oauth.cache import cache_key
    from bastion.store.factory import open_store

    scopes = route_scopes(config, route)
    keys = sorted({cache_key(s.oauth) for s in scopes})
    shared: dict[str, set[str]] = {}  # store URL → keys whose tokens live there
    for scope in scopes:
        if scope.cache.strategy == "redis":
            shared.setdefault(scope.cache.redis or config.store, set()).add(cache_key(scope.oauth))
    opened: list[Store] = []
    try:
        if store is None:
            store = await open_store(config.store)
            opened.append(store)
        for url, url_keys in shared.items():
            target = store if url == config.store else await open_store(url, "cache.redis")
            if target is not store:
                opened.append(target)
            for key in url_keys:
                await target.delete(TOKENS, key)
        await publish_purge(store, None if route is None else keys)
    finally:
        for each in opened:
            await each.aclose()
    return len(keys)
