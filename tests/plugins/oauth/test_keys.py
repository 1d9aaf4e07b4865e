"""Gateway-held signing keys (SPEC §11, issue 5 point 6): the key ring in the store, rotation,
a node's view of the ring (StoreKeyRing), and TokenCodec signing and verifying with it.

The real SQLite store, a clock that moves only when a test moves it, no sleeps; tokens checked
with PyJWT (an independent JOSE client) as an upstream would, from the public JWKs alone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import jwt
import orjson
import pytest

from bastion.gateway.clock import Clock
from bastion.plugins.oauth.keys import (
    NAMESPACE,
    TOPIC,
    RingKey,
    StoreKeyRing,
    decode_ring,
    encode_ring,
    load_or_create,
    new_ring_key,
    rotate,
)
from bastion.plugins.oauth.schema import OAuthRule
from bastion.plugins.oauth.tokens import InvalidToken, TokenCodec
from bastion.store.base import StoreUnavailable
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import FakeClock as StepClock

T = TypeVar("T")

ALGS = ["RS256", "ES256", "EdDSA"]
TYP = "application/at+jwt"
ISSUER = "Higress-Gateway"
SECRET = "s" * 32
CONSUMERS = [{"name": "c1", "client_id": "id-1", "client_secret": SECRET}]
# RFC 7638 §3.2: the required members of each key type, the only ones hashed
THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
# the algorithms TokenCodec signs and verifies with joserfc (EdDSA without joserfc's RFC 9864
# deprecation warning escaping: pytest turns warnings into errors here)
CODEC_ALGS = ["RS256", "ES256", "EdDSA"]
LIFETIME = 7200.0 + 3 * 60  # token_ttl + 3 * skew, as `bastion keys rotate` computes it


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def _open(path: Path, clock: StepClock) -> Iterator[SqliteStore]:
    store = SqliteStore(path, clock=clock.time)
    yield store
    asyncio.run(store.aclose())


@pytest.fixture
def store(tmp_path: Path, clock: StepClock) -> Iterator[SqliteStore]:
    yield from _open(tmp_path / "s.db", clock)


@pytest.fixture
def other_node(tmp_path: Path, clock: StepClock, store: SqliteStore) -> Iterator[SqliteStore]:
    """A second connection to the same file: another gateway node."""
    yield from _open(tmp_path / "s.db", clock)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638, computed here from the JWK's members (not by the library under test)."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return b64(hashlib.sha256(canonical).digest())


def stored_ring(store: SqliteStore, alg: str) -> list[RingKey]:
    data = run(store.get(NAMESPACE, alg))
    assert data is not None
    return decode_ring(data)


def claims(clock: Clock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.time())
    base = {
        "iss": ISSUER, "sub": "c1", "aud": "default", "client_id": "id-1",
        "iat": now, "exp": now + 7200, "jti": str(uuid.uuid4()),
    }  # fmt: skip
    return {**base, **overrides}


def raw_token(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}".encode()
    return f"{signing_input.decode()}.{b64(sign(signing_input))}"


def pem_private(key: RingKey) -> bytes:
    pem: bytes = key.key.as_pem(private=True)
    return pem


def pem_public(key: RingKey) -> bytes:
    pem: bytes = key.key.as_pem(private=False)
    return pem


# --- the ring in the store ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_load_or_create_creates_one_ring_once(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    first = run(load_or_create(store, alg, clock.time()))
    assert [(k.alg, k.created, k.retired) for k in first] == [(alg, clock.time(), None)]
    clock.advance(30)
    again = run(load_or_create(store, alg, clock.time()))
    assert [k.kid for k in again] == [first[0].kid]
    assert again[0].created == first[0].created  # read back, not made anew
    assert [k.kid for k in stored_ring(store, alg)] == [first[0].kid]


@pytest.mark.parametrize("alg", ALGS)
def test_two_concurrent_creators_end_with_the_same_single_key(
    store: SqliteStore, other_node: SqliteStore, clock: StepClock, alg: str
) -> None:
    both_read = asyncio.Event()
    seen: list[bytes | None] = []

    class RacingStore:
        """Holds each creator after its first read until both have read "no ring": a real race."""

        def __init__(self, inner: SqliteStore) -> None:
            self.inner = inner
            self.reads = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def get(self, ns: str, key: str) -> bytes | None:
            value = await self.inner.get(ns, key)
            self.reads += 1
            if self.reads == 1:
                seen.append(value)
                if len(seen) == 2:
                    both_read.set()
                await both_read.wait()
            return value

    async def race() -> tuple[list[RingKey], list[RingKey]]:
        one, two = RacingStore(store), RacingStore(other_node)
        a, b = await asyncio.gather(
            load_or_create(one, alg, clock.time()),
            load_or_create(two, alg, clock.time()),
        )
        return a, b

    a, b = run(race())
    assert seen == [None, None]  # both found no ring and both tried to create one
    assert len(a) == len(b) == 1
    assert a[0].kid == b[0].kid
    assert a[0].key.as_dict(private=True) == b[0].key.as_dict(private=True)
    assert [k.kid for k in stored_ring(store, alg)] == [a[0].kid]


@pytest.mark.parametrize("alg", ALGS)
def test_the_kid_is_the_rfc7638_thumbprint(alg: str) -> None:
    one, two = new_ring_key(alg, 0.0), new_ring_key(alg, 0.0)
    for key in (one, two):
        jwk = key.public_jwk()
        assert key.kid == thumbprint(jwk) == jwk["kid"]
        assert len(base64.urlsafe_b64decode(key.kid + "=")) == 32  # SHA-256, base64url, no pad
    assert one.kid != two.kid


@pytest.mark.parametrize("alg", ALGS)
def test_encode_decode_round_trip(alg: str) -> None:
    current, old = new_ring_key(alg, 2000.5), new_ring_key(alg, 1000.25)
    old = RingKey(old.kid, old.alg, old.created, 1999.0, old.key)
    back = decode_ring(encode_ring([current, old]))
    assert [(k.kid, k.alg, k.created, k.retired) for k in back] == [
        (current.kid, alg, 2000.5, None),
        (old.kid, alg, 1000.25, 1999.0),
    ]
    for before, after in zip([current, old], back, strict=True):
        assert after.key.as_dict(private=True) == before.key.as_dict(private=True)
        assert after.public_jwk() == before.public_jwk()
    # the decoded private key signs what the original public key verifies
    token = jwt.encode({"x": 1}, pem_private(back[0]), algorithm=alg)
    assert jwt.decode(token, pem_public(current), algorithms=[alg]) == {"x": 1}


@pytest.mark.parametrize("alg", ALGS)
def test_rotate_retires_the_old_key_and_drops_it_after_its_lifetime(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    first = run(load_or_create(store, alg, clock.time()))[0]
    version = run(store.version(TOPIC))
    clock.advance(10)
    t1 = clock.time()
    second = run(rotate(store, alg, LIFETIME, t1))
    ring = stored_ring(store, alg)
    assert [(k.kid, k.retired) for k in ring] == [(second.kid, None), (first.kid, t1)]
    assert second.kid != first.kid and second.alg == alg and second.created == t1
    assert run(store.version(TOPIC)) == version + 1  # every node is told

    clock.advance(LIFETIME - 1)  # first's tokens may still live: kept
    t2 = clock.time()
    third = run(rotate(store, alg, LIFETIME, t2))
    ring = stored_ring(store, alg)
    assert [(k.kid, k.retired) for k in ring] == [
        (third.kid, None), (second.kid, t2), (first.kid, t1),
    ]  # fmt: skip

    clock.advance(2)  # first retired LIFETIME + 1 s ago: dropped on this rotation; second kept
    t3 = clock.time()
    fourth = run(rotate(store, alg, LIFETIME, t3))
    ring = stored_ring(store, alg)
    assert [(k.kid, k.retired) for k in ring] == [
        (fourth.kid, None), (third.kid, t3), (second.kid, t2),
    ]  # fmt: skip
    assert run(store.version(TOPIC)) == version + 3


def test_two_rotations_at_the_same_instant_keep_both_new_keys(
    store: SqliteStore, other_node: SqliteStore, clock: StepClock
) -> None:
    run(load_or_create(store, "ES256", clock.time()))
    tried = asyncio.Event()
    attempts: list[bool] = []

    class Node:
        """Reads the ring only once the other rotation has tried the lock too."""

        def __init__(self, inner: SqliteStore) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def acquire(self, name: str, owner: str, lease: float) -> bool:
            taken: bool = await self.inner.acquire(name, owner, lease)
            attempts.append(taken)
            if len(attempts) >= 2:
                tried.set()
            return taken

        async def get(self, ns: str, key: str) -> bytes | None:
            await tried.wait()
            return await self.inner.get(ns, key)

    async def both() -> list[RingKey]:
        now = clock.time() + 10
        return list(
            await asyncio.gather(
                rotate(Node(store), "ES256", LIFETIME, now),
                rotate(Node(other_node), "ES256", LIFETIME, now),
            )
        )

    fresh = run(both())
    kids = [k.kid for k in stored_ring(store, "ES256")]
    assert len(kids) == 3
    assert {k.kid for k in fresh} <= set(kids)  # each kid the CLI prints is in the ring


def test_rotate_releases_its_lock(store: SqliteStore, clock: StepClock) -> None:
    run(rotate(store, "ES256", LIFETIME, clock.time()))
    assert run(store.acquire("signing-keys:ES256", "someone", 10.0))  # free again
    run(store.release("signing-keys:ES256", "someone"))


# --- a node's view: StoreKeyRing ------------------------------------------------------------


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.mark.parametrize("alg", ALGS)
def test_refresh_loads_the_ring_and_picks_the_current_key(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    changes = Changes()
    ring = StoreKeyRing(store, alg, clock, changes)
    assert ring.stale()
    with pytest.raises(StoreUnavailable):
        ring.signing_key()  # nothing loaded yet: fail closed, never sign with nothing
    run(ring.refresh())
    (only,) = stored_ring(store, alg)  # the first node to need the ring created it
    kid, key_alg, _ = ring.signing_key()
    assert (kid, key_alg) == (only.kid, alg)
    assert changes.count == 0  # a first load is not a change
    assert not ring.stale()
    clock.mono += 0.999
    assert not ring.stale()
    clock.mono += 0.001
    assert ring.stale()


def test_the_current_key_is_found_wherever_it_is_in_the_record(
    store: SqliteStore, clock: StepClock
) -> None:
    old, current = new_ring_key("ES256", 100.0), new_ring_key("ES256", 200.0)
    old = RingKey(old.kid, old.alg, old.created, 200.0, old.key)
    run(store.put(NAMESPACE, "ES256", encode_ring([old, current])))
    ring = StoreKeyRing(store, "ES256", clock, Changes())
    run(ring.refresh())
    assert ring.signing_key()[0] == current.kid
    assert ring.verification_key(old.kid) is not None


@pytest.mark.parametrize("alg", ALGS)
def test_a_rotation_by_another_node_is_seen_after_a_second(
    store: SqliteStore, other_node: SqliteStore, clock: StepClock, alg: str
) -> None:
    changes = Changes()
    ring = StoreKeyRing(store, alg, clock, changes)
    run(ring.refresh())
    old_kid = ring.signing_key()[0]
    fresh = run(rotate(other_node, alg, LIFETIME, clock.time()))

    clock.mono += 0.5
    assert not ring.stale()  # within the poll interval the last read stands
    assert ring.signing_key()[0] == old_kid
    clock.mono += 0.5
    assert ring.stale()
    run(ring.refresh())
    assert ring.signing_key()[0] == fresh.kid
    assert changes.count == 1  # verified-token caches are dropped
    found = ring.verification_key(old_kid)
    assert found is not None and found[0] == alg  # the old key still verifies
    assert ring.verification_key(fresh.kid) is not None
    assert ring.verification_key("no-such-kid") is None

    clock.mono += 1
    run(ring.refresh())  # no change since: on_change is not called again
    assert changes.count == 1


@pytest.mark.parametrize("alg", ALGS)
def test_public_jwks_has_no_private_members(store: SqliteStore, clock: StepClock, alg: str) -> None:
    run(load_or_create(store, alg, clock.time()))
    run(rotate(store, alg, LIFETIME, clock.time() + 1))
    ring = StoreKeyRing(store, alg, clock, Changes())
    run(ring.refresh())
    jwks = ring.public_jwks()
    assert {k["kid"] for k in jwks} == {k.kid for k in stored_ring(store, alg)}
    assert len(jwks) == 2  # the retired key is listed while its tokens may live
    for jwk in jwks:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
        assert (jwk["alg"], jwk["use"]) == (alg, "sig")
        assert jwk["kid"] == thumbprint(jwk)
        jwt.PyJWK(jwk)  # a JOSE library takes it as a public key as it is


# --- TokenCodec with the ring ---------------------------------------------------------------


def codec_for(store: SqliteStore, clock: StepClock, alg: str) -> tuple[TokenCodec, StoreKeyRing]:
    config = OAuthRule.model_validate({"consumers": CONSUMERS, "signing": {"alg": alg}})
    ring = StoreKeyRing(store, alg, clock, Changes())
    run(ring.refresh())
    return TokenCodec(config, clock, ring), ring


def jwk_of(ring: StoreKeyRing, kid: str) -> dict[str, Any]:
    return next(k for k in ring.public_jwks() if k["kid"] == kid)


@pytest.mark.parametrize("alg", CODEC_ALGS)
def test_tokens_carry_the_kid_and_verify_with_the_public_jwk(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    codec, ring = codec_for(store, clock, alg)
    consumer = codec.by_id["id-1"]
    token = codec.issue(consumer, "default", "read")
    header = jwt.get_unverified_header(token)
    kid = ring.signing_key()[0]
    assert header == {"alg": alg, "typ": TYP, "kid": kid}
    payload = jwt.decode(
        token, jwt.PyJWK(jwk_of(ring, kid)), algorithms=[alg], audience="default", issuer=ISSUER
    )
    assert (payload["sub"], payload["client_id"], payload["scope"]) == ("c1", "id-1", "read")
    verified = codec.verify(token)
    assert (verified.consumer, verified.scopes) == ("c1", frozenset({"read"}))


@pytest.mark.parametrize("alg", CODEC_ALGS)
def test_after_a_rotation_old_tokens_verify_and_new_ones_use_the_new_kid(
    store: SqliteStore, other_node: SqliteStore, clock: StepClock, alg: str
) -> None:
    codec, ring = codec_for(store, clock, alg)
    consumer = codec.by_id["id-1"]
    old_token = codec.issue(consumer, "default", None)
    fresh = run(rotate(other_node, alg, LIFETIME, clock.time()))
    clock.mono += 1
    run(ring.refresh())
    new_token = codec.issue(consumer, "default", None)
    assert jwt.get_unverified_header(new_token)["kid"] == fresh.kid
    assert jwt.get_unverified_header(old_token)["kid"] != fresh.kid
    assert codec.verify(old_token).consumer == codec.verify(new_token).consumer == "c1"


@pytest.mark.parametrize("alg", ALGS)
def test_hs256_signed_with_the_public_key_is_refused(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    codec, ring = codec_for(store, clock, alg)
    kid = ring.signing_key()[0]
    current = ring.keys[kid]
    secrets = [pem_public(current), orjson.dumps(jwk_of(ring, kid))]
    for secret in secrets:
        header = {"alg": "HS256", "typ": TYP, "kid": kid}
        token = raw_token(header, claims(clock), partial(hmac.digest, secret, digest="sha256"))
        with pytest.raises(InvalidToken) as caught:
            codec.verify(token)
        assert caught.value.reason == "alg"


@pytest.mark.parametrize("alg", ALGS)
def test_alg_none_is_refused(store: SqliteStore, clock: StepClock, alg: str) -> None:
    codec, ring = codec_for(store, clock, alg)
    kid = ring.signing_key()[0]
    for none in ("none", "None", "NONE"):
        header = {"alg": none, "typ": TYP, "kid": kid}
        token = raw_token(header, claims(clock), lambda m: b"")
        with pytest.raises(InvalidToken):
            codec.verify(token)
    # a real signature under alg none's header is still refused
    private = pem_private(ring.keys[kid])
    good = jwt.encode(claims(clock), private, algorithm=alg, headers={"typ": TYP, "kid": kid})
    _, payload, signature = good.split(".")
    forged = f"{b64(orjson.dumps({'alg': 'none', 'typ': TYP, 'kid': kid}))}.{payload}.{signature}"
    with pytest.raises(InvalidToken):
        codec.verify(forged)


@pytest.mark.parametrize("alg", ALGS)
def test_an_unknown_kid_or_no_kid_is_refused(
    store: SqliteStore, clock: StepClock, alg: str
) -> None:
    codec, _ = codec_for(store, clock, alg)
    stranger = new_ring_key(alg, clock.time())  # a well-formed key this ring never had
    for headers in ({"typ": TYP, "kid": stranger.kid}, {"typ": TYP, "kid": "nope"}, {"typ": TYP}):
        token = jwt.encode(claims(clock), pem_private(stranger), algorithm=alg, headers=headers)
        with pytest.raises(InvalidToken) as caught:
            codec.verify(token)
        assert caught.value.reason == "unknown kid"
    # a consumer-secret HS256 token (Higress style) is no token of this gateway's
    higress = jwt.encode(claims(clock), SECRET, algorithm="HS256", headers={"typ": TYP})
    with pytest.raises(InvalidToken):
        codec.verify(higress)


def test_an_rs256_token_is_refused_by_an_es256_ring(store: SqliteStore, clock: StepClock) -> None:
    codec, ring = codec_for(store, clock, "ES256")
    es_kid = ring.signing_key()[0]
    rsa = new_ring_key("RS256", clock.time())
    # its own kid: not in the ES256 ring
    token = jwt.encode(
        claims(clock), pem_private(rsa), algorithm="RS256", headers={"typ": TYP, "kid": rsa.kid}
    )
    with pytest.raises(InvalidToken) as caught:
        codec.verify(token)
    assert caught.value.reason == "unknown kid"
    # the ES256 key's kid: the key pins ES256, so the token's RS256 is refused before any check
    token = jwt.encode(
        claims(clock), pem_private(rsa), algorithm="RS256", headers={"typ": TYP, "kid": es_kid}
    )
    with pytest.raises(InvalidToken) as caught:
        codec.verify(token)
    assert caught.value.reason == "alg"


def test_a_tampered_payload_is_refused(store: SqliteStore, clock: StepClock) -> None:
    codec, _ = codec_for(store, clock, "ES256")
    token = codec.issue(codec.by_id["id-1"], "default", "read")
    head, _, signature = token.split(".")
    payload = b64(orjson.dumps(claims(clock, scope="read write admin")))
    with pytest.raises(InvalidToken) as caught:
        codec.verify(f"{head}.{payload}.{signature}")
    assert caught.value.reason == "signature"
