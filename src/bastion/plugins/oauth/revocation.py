"""Revocation by `jti`, seen by every node through the store within about a second.

A revoked jti is a record in the store (namespace `revoked`) that lives as long as a token with
that jti could still be accepted, and a bump of the `revocations` topic. Each node re-reads the
topic's version at most once a second, inline on a request (no timer to own); a new version
drops the verified-token caches, so a revoked token is verified again, found revoked, refused.
When the version cannot be read, requests fail closed with StoreUnavailable (SPEC §10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bastion.gateway.clock import Clock
from bastion.store.base import Store
from bastion.store.factory import open_store
from bastion.store.watch import TopicWatch

if TYPE_CHECKING:
    from bastion.config.model import Config

NAMESPACE = "revoked"
TOPIC = "revocations"


async def revoke(store: Store, jtis: Iterable[str], ttl: float) -> int:
    """Revoke each jti for `ttl` seconds (longer than any token bearing it can live); the count."""
    count = 0
    for jti in jtis:
        await store.put(NAMESPACE, jti, b"1", ttl=ttl)
        count += 1
    if count:
        await store.bump(TOPIC)
    return count


def revocation_ttl(config: Config) -> float:
    """How long a revocation must last under `config`: past the exp of any token it accepts.
    A token is accepted until exp + skew, and exp - iat <= ttl + skew with iat <= now + skew,
    so ttl + 3 * skew from now covers every token of every scope. ValueError without oauth."""
    from bastion.plugins.oauth.schema import scopes_of

    scopes = scopes_of(config)
    if not scopes:
        raise ValueError("the config has no oauth plugin: no token of Bastion's to revoke")
    return float(max(s.token_ttl + 3 * s.clock_skew_seconds for s in scopes))


async def revoke_under(config: Config, jtis: list[str], store: Store | None = None) -> int:
    """Revoke `jtis` in `config`'s store (opened here unless given); the count."""
    ttl = revocation_ttl(config)
    if store is not None:
        return await revoke(store, jtis, ttl)
    opened = await open_store(config.store)
    try:
        return await revoke(opened, jtis, ttl)
    finally:
        await opened.aclose()


class Revocations(TopicWatch):
    """This node's view of the revocation list: the topic's version, and a per-jti look-up."""

    def __init__(self, store: Store, clock: Clock, on_change: Callable[[], None]) -> None:
        super().__init__(store, TOPIC, clock)
        self.on_change = on_change

    async def changed(self, previous: int | None) -> None:
        if previous is not None:
            self.on_change()  # verified tokens are checked against the list again

    async def is_revoked(self, jti: str) -> bool:
        return await self.store.get(NAMESPACE, jti) is not None
