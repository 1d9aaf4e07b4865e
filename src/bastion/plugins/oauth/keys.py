"""Gateway-held signing keys (`signing`, SPEC §11): one key ring per algorithm, in the store.

The ring is one store record: the current key signs, older keys still verify until every token
they signed has expired, then rotation drops them. Every node reads the ring from the store and
re-reads it within a second of a change (the `signing-keys` topic), so all nodes sign and verify
with the same keys; `bastion keys rotate` changes it under a store lock. The first node that needs
a ring and finds none creates it (put_if_absent: one creator wins). Keys are JWKs (RFC 7517) with
the RFC 7638 thumbprint as `kid`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.gateway.clock import Clock
from bastion.store.base import Store, StoreUnavailable
from bastion.store.watch import TopicWatch

NAMESPACE = "signing-keys"
TOPIC = "signing-keys"
_LOCK_LEASE = 10.0

Key = Any


def generate_key(alg: str) -> Key:
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    if alg == "RS256":
        return RSAKey.generate_key(2048)
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    raise ValueError(f"unsupported signing alg {alg!r}")


@dataclass(frozen=True, slots=True)
class RingKey:
    kid: str
    alg: str
    created: float
    retired: float | None  # when a newer key took over signing; None for the current key
    key: Key

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = self.key.as_dict(private=False)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_ring_key(alg: str, now: float) -> RingKey:
    key = generate_key(alg)
    return RingKey(key.thumbprint(), alg, now, None, key)


def encode_ring(keys: list[RingKey]) -> bytes:
    return orjson.dumps([_record(k) for k in keys])


def _record(k: RingKey) -> dict[str, Any]:
    return {
        "kid": k.kid, "alg": k.alg, "created": k.created, "retired": k.retired,
        "jwk": k.key.as_dict(private=True),
    }  # fmt: skip


def decode_ring(data: bytes) -> list[RingKey]:
    from joserfc.jwk import import_key

    return [
        RingKey(item["kid"], item["alg"], item["created"], item["retired"], import_key(item["jwk"]))
        for item in orjson.loads(data)
    ]


async def load_or_create(store: Store, alg: str, now: float) -> list[RingKey]:
    data = await store.get(NAMESPACE, alg)
    if data is None:
        await store.put_if_absent(NAMESPACE, alg, encode_ring([new_ring_key(alg, now)]))
        data = await store.get(NAMESPACE, alg)
        if data is None:
            raise StoreUnavailable("the signing key ring vanished while being created")
    return decode_ring(data)


async def rotate(store: Store, alg: str, lifetime: float, now: float | None = None) -> RingKey:
    """Make a new current key for `alg`; keep older keys while a token they signed may live
    (`lifetime` seconds after they stopped signing). The new key."""
    now = time.time() if now is None else now
    owner = f"rotate:{uuid.uuid4()}"  # unique: acquire is re-entrant for one owner
    lock = f"{NAMESPACE}:{alg}"
    for _ in range(int(_LOCK_LEASE / 0.1)):
        if await store.acquire(lock, owner, _LOCK_LEASE):
            break
        await asyncio.sleep(0.1)
    else:
        raise StoreUnavailable("another rotation holds the key ring lock")
    try:
        ring = await load_or_create(store, alg, now)
        kept = [
            RingKey(k.kid, k.alg, k.created, k.retired if k.retired is not None else now, k.key)
            for k in ring
            if k.retired is None or k.retired + lifetime > now
        ]
        fresh = new_ring_key(alg, now)
        await store.put(NAMESPACE, alg, encode_ring([fresh, *kept]))
        await store.bump(TOPIC)
        return fresh
    finally:
        await store.release(lock, owner)


class StoreKeyRing(TopicWatch):
    """The KeyRing of one algorithm as this node knows it (tokens.KeyRing)."""

    def __init__(self, store: Store, alg: str, clock: Clock, on_change: Callable[[], None]) -> None:
        super().__init__(store, TOPIC, clock)
        self.alg = alg
        self.on_change = on_change
        self.keys: dict[str, RingKey] = {}
        self.current: RingKey | None = None

    async def changed(self, previous: int | None) -> None:
        ring = await load_or_create(self.store, self.alg, self.clock.time())
        self.keys = {k.kid: k for k in ring}
        self.current = next((k for k in ring if k.retired is None), ring[0])
        if previous is not None:
            self.on_change()  # cached verifications may rest on a dropped key

    def signing_key(self) -> tuple[str, str, Key]:
        current = self.current
        if current is None:
            raise StoreUnavailable("the signing keys are not loaded yet")
        return current.kid, current.alg, current.key

    def verification_key(self, kid: str) -> tuple[str, Key] | None:
        found = self.keys.get(kid)
        return None if found is None else (found.alg, found.key)

    def public_jwks(self) -> list[dict[str, Any]]:
        return [k.public_jwk() for k in self.keys.values()]
