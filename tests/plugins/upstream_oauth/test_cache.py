"""The upstream token cache: Kong's cache key and TTL, and what Bastion adds (single-flight on a
node and across nodes through the store's lease lock, refresh ahead in the background, retries
of a failed refresh), against an httpx.MockTransport IdP, a fake clock and the real SqliteStore
standing in for Redis (the same Store protocol)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from bastion.idp.client_auth import ClientCredentials
from bastion.idp.token_client import IdpError, TokenRequest
from bastion.ops.metrics import Metrics
from bastion.plugins.upstream_oauth.cache import (
    MIN_TTL,
    NAMESPACE,
    REFRESH_AT,
    RETRY_REFRESH,
    CachedToken,
    TokenSource,
    cache_key,
)
from bastion.plugins.upstream_oauth.schema import OAuthSettings
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import FakeClock

T = TypeVar("T")
ENDPOINT = "https://idp.example.com/oauth2/token"
OAUTH: dict[str, Any] = {
    "token_endpoint": ENDPOINT,
    "client_id": "gateway",
    "client_secret": "s3cret",
    "scopes": ["read", "write", "openid"],
    "audience": ["billing", "api"],
    "token_post_args": {"resource": "billing", "a": "1"},
    "token_headers": {"X-Tenant": "acme", "X-B": "2"},
}
KEY = "k" * 64


def settings(**changes: Any) -> OAuthSettings:
    return OAuthSettings.model_validate({**OAUTH, **changes})


# --- cache_key --------------------------------------------------------------------------------


def kong_key(oauth: dict[str, Any]) -> str:
    """Kong's definition, written out independently: every field (defaults included), keys
    sorted at every level, list values sorted, hashed with SHA-256."""

    def canon(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canon(value[k]) for k in sorted(value)}
        if isinstance(value, list):
            return sorted(value)
        return value

    full = {
        "grant_type": "client_credentials",
        "client_id": None,
        "client_secret": None,
        "username": None,
        "password": None,
        "scopes": ["openid"],
        "audience": [],
        "token_post_args": {},
        "token_headers": {},
        **oauth,
    }
    return hashlib.sha256(orjson.dumps(canon(full))).hexdigest()


def test_the_key_is_sha256_of_the_sorted_settings() -> None:
    key = cache_key(settings())
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == kong_key(OAUTH)
    assert cache_key(settings()) == key


def test_reordered_scopes_and_audience_share_the_key() -> None:
    reordered = settings(scopes=["openid", "write", "read"], audience=["api", "billing"])
    assert cache_key(reordered) == cache_key(settings())


def test_identical_settings_in_another_key_order_share_the_key() -> None:
    backwards = dict(reversed(list(OAUTH.items())))
    backwards["token_post_args"] = {"a": "1", "resource": "billing"}
    backwards["token_headers"] = {"X-B": "2", "X-Tenant": "acme"}
    assert cache_key(OAuthSettings.model_validate(backwards)) == cache_key(settings())


def test_defaults_given_or_omitted_share_the_key() -> None:
    bare = {"token_endpoint": ENDPOINT, "client_id": "gateway", "client_secret": "s3cret"}
    explicit = {**bare, "grant_type": "client_credentials", "scopes": ["openid"], "audience": []}
    assert cache_key(OAuthSettings.model_validate(bare)) == cache_key(
        OAuthSettings.model_validate(explicit)
    )


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": "s3cret2"},
        {"client_id": "other"},
        {"token_endpoint": ENDPOINT + "2"},
        {"scopes": ["read", "write"]},
        {"scopes": []},
        {"audience": ["billing"]},
        {"token_post_args": {"resource": "other", "a": "1"}},
        {"token_headers": {"X-Tenant": "other", "X-B": "2"}},
        {"grant_type": "password", "username": "u", "password": "p"},
    ],
)
def test_any_change_gives_another_key(change: dict[str, Any]) -> None:
    assert cache_key(settings(**change)) != cache_key(settings())


# --- an IdP -----------------------------------------------------------------------------------


class IdP:
    """A token endpoint: counts requests, answers `tok-<n>`, can fail or hold answers back."""

    def __init__(self) -> None:
        self.calls = 0
        self.expires_in: Any = 100
        self.token_type: str | None = "Bearer"
        self.status = 200
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "server_error"})
        body: dict[str, Any] = {"access_token": f"tok-{n}"}
        if self.token_type is not None:
            body["token_type"] = self.token_type
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)


REQUEST = TokenRequest(
    ENDPOINT,
    (("grant_type", "client_credentials"),),
    (),
    ClientCredentials("client_secret_post", "gateway", "s3cret"),
)


def source(
    idp: IdP,
    http: httpx.AsyncClient,
    clock: FakeClock,
    metrics: Metrics | None = None,
    shared: SqliteStore | None = None,
    eagerly_expire: int = 5,
    default_ttl: int = 3600,
) -> TokenSource:
    return TokenSource(
        KEY,
        REQUEST,
        http,
        eagerly_expire=eagerly_expire,
        default_ttl=default_ttl,
        shared=shared,
        lock_lease=12.0,
        clock=clock,
        metrics=metrics or Metrics(),
    )


def client(idp: IdP) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(idp.handle))


def run(body: Callable[[httpx.AsyncClient], Awaitable[T]], idp: IdP) -> T:
    async def go() -> T:
        async with client(idp) as http:
            return await body(http)

    return asyncio.run(go())


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Let the loop run (a ms at a time, for the store's thread) until `condition` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.001)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp() -> IdP:
    return IdP()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "s.db", clock=clock.time)
    yield sqlite
    asyncio.run(sqlite.aclose())


# --- TTL --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "eagerly_expire", "ttl"),
    [
        (100, 5, 95.0),
        (3600, 5, 3595.0),
        (100, 0, 100.0),
        (60.5, 0.5, 60.0),
        (6, 5, MIN_TTL),
        (5, 5, MIN_TTL),
        (3, 5, MIN_TTL),
        (None, 5, 3600.0),
        (0, 5, MIN_TTL),  # 0 is sent: the shortest TTL, not default_ttl
        (-10, 5, 3600.0),
        ("200", 5, 195.0),
    ],
)
def test_ttl(idp: IdP, clock: FakeClock, expires_in: Any, eagerly_expire: int, ttl: float) -> None:
    idp.expires_in = expires_in

    async def body(http: httpx.AsyncClient) -> CachedToken | None:
        src = source(idp, http, clock, eagerly_expire=eagerly_expire)
        assert await src.header_value() == "Bearer tok-1"
        return src.current

    token = run(body, idp)
    now = clock.time()
    assert token is not None
    assert MIN_TTL == 1.0
    assert (token.fetched_at, token.expires_at) == (now, now + ttl)
    assert token.refresh_at == pytest.approx(now + ttl * REFRESH_AT)
    assert REFRESH_AT == 0.75


def test_default_ttl_is_the_configured_one(idp: IdP, clock: FakeClock) -> None:
    idp.expires_in = None

    async def body(http: httpx.AsyncClient) -> CachedToken | None:
        src = source(idp, http, clock, default_ttl=60)
        await src.header_value()
        return src.current

    token = run(body, idp)
    assert token is not None and token.expires_at == clock.time() + 60


@pytest.mark.parametrize(
    ("token_type", "value"),
    [("bearer", "bearer tok-1"), (None, "Bearer tok-1"), ("DPoP", "DPoP tok-1")],
)
def test_the_header_value_keeps_the_idps_token_type(
    idp: IdP, clock: FakeClock, token_type: str | None, value: str
) -> None:
    idp.token_type = token_type

    async def body(http: httpx.AsyncClient) -> str:
        return await source(idp, http, clock).header_value()

    assert run(body, idp) == value


def test_hits_until_expiry_then_a_new_token(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()
    idp.expires_in = 100  # ttl 95, renewal from 71.25

    async def body(http: httpx.AsyncClient) -> list[str]:
        src = source(idp, http, clock, metrics)
        values = [await src.header_value(), await src.header_value()]
        clock.advance(71)
        values.append(await src.header_value())
        clock.advance(24)  # 95: expired (the renewal window was not used: no call came)
        values.append(await src.header_value())
        return values

    assert run(body, idp) == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert idp.calls == 2
    assert metrics.token_cache == {"miss": 2, "hit": 2}
    assert metrics.idp_requests == {"ok": 2}
    assert sum(metrics.idp_latency[:-1]) == 2


def test_purge_drops_the_token(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()

    async def body(http: httpx.AsyncClient) -> list[str]:
        src = source(idp, http, clock, metrics)
        first = await src.header_value()
        src.purge()
        assert src.current is None
        return [first, await src.header_value(), await src.header_value()]

    assert run(body, idp) == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]
    assert metrics.token_cache == {"miss": 2, "hit": 1}


def test_purge_shared_without_a_store_does_nothing(idp: IdP, clock: FakeClock) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        src = source(idp, http, clock)
        await src.header_value()
        await src.purge_shared()
        assert src.current is not None

    run(body, idp)


# --- errors -----------------------------------------------------------------------------------


def test_the_idp_error_reaches_the_caller_and_nothing_is_cached(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()
    idp.status = 500

    async def body(http: httpx.AsyncClient) -> str:
        src = source(idp, http, clock, metrics)
        for _ in range(2):
            with pytest.raises(IdpError) as info:
                await src.header_value()
            assert (info.value.kind, info.value.status) == ("status", 500)
        assert src.current is None
        idp.status = 200
        return await src.header_value()

    assert run(body, idp) == "Bearer tok-3"
    assert idp.calls == 3
    assert metrics.idp_requests == {"status": 2, "ok": 1}
    assert metrics.token_cache == {"miss": 3}


def test_a_network_error_is_counted_by_kind(clock: FakeClock) -> None:
    metrics = Metrics()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
            src = source(IdP(), http, clock, metrics)
            with pytest.raises(IdpError, match="network"):
                await src.header_value()

    asyncio.run(go())
    assert metrics.idp_requests == {"network": 1}


# --- single-flight ----------------------------------------------------------------------------


def test_concurrent_misses_make_one_idp_request(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()

    async def body(http: httpx.AsyncClient) -> list[str]:
        idp.gate = asyncio.Event()
        src = source(idp, http, clock, metrics)
        calls = [asyncio.ensure_future(src.header_value()) for _ in range(50)]
        await until(lambda: idp.calls == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert idp.calls == 1 and not any(c.done() for c in calls)
        idp.gate.set()
        return await asyncio.gather(*calls)

    assert run(body, idp) == ["Bearer tok-1"] * 50
    assert idp.calls == 1
    assert metrics.token_cache == {"miss": 50}
    assert metrics.idp_requests == {"ok": 1}


def test_concurrent_misses_share_one_failure(idp: IdP, clock: FakeClock) -> None:
    async def body(http: httpx.AsyncClient) -> list[Any]:
        idp.gate = asyncio.Event()
        idp.status = 503
        src = source(idp, http, clock)
        calls = [asyncio.ensure_future(src.header_value()) for _ in range(20)]
        await until(lambda: idp.calls == 1)
        idp.gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    results = run(body, idp)
    assert idp.calls == 1
    assert all(isinstance(r, IdpError) and r.status == 503 for r in results)


def test_a_cancelled_caller_does_not_cancel_the_fetch(idp: IdP, clock: FakeClock) -> None:
    async def body(http: httpx.AsyncClient) -> str:
        idp.gate = asyncio.Event()
        src = source(idp, http, clock)
        first = asyncio.ensure_future(src.header_value())
        second = asyncio.ensure_future(src.header_value())
        await until(lambda: idp.calls == 1)
        first.cancel()
        idp.gate.set()
        return await second

    assert run(body, idp) == "Bearer tok-1"
    assert idp.calls == 1


# --- refresh ahead ----------------------------------------------------------------------------


def test_refresh_ahead_answers_at_once_and_swaps_in_the_new_token(
    idp: IdP, clock: FakeClock
) -> None:
    metrics = Metrics()

    async def body(http: httpx.AsyncClient) -> None:
        src = source(idp, http, clock, metrics)
        assert await src.header_value() == "Bearer tok-1"
        clock.advance(70)  # before 3/4 of 95
        assert await src.header_value() == "Bearer tok-1"
        assert idp.calls == 1
        clock.advance(2)  # past 71.25
        idp.gate = asyncio.Event()  # the IdP holds its answer: callers must not wait on it
        for _ in range(5):
            assert await asyncio.wait_for(src.header_value(), 1) == "Bearer tok-1"
        await until(lambda: idp.calls == 2)
        assert await src.header_value() == "Bearer tok-1"
        idp.gate.set()
        await until(lambda: src.current is not None and src.current.header_value.endswith("2"))
        assert await src.header_value() == "Bearer tok-2"
        assert src.current is not None and src.current.fetched_at == clock.time()

    run(body, idp)
    assert idp.calls == 2  # one renewal however many requests came during it
    assert metrics.token_cache == {"miss": 1, "hit": 8}


def test_a_failed_refresh_keeps_the_token_and_retries_a_second_later(
    idp: IdP, clock: FakeClock
) -> None:
    metrics = Metrics()

    async def body(http: httpx.AsyncClient) -> None:
        src = source(idp, http, clock, metrics)
        await src.header_value()
        expires_at = src.current.expires_at if src.current else 0
        clock.advance(72)
        idp.status = 500
        assert await src.header_value() == "Bearer tok-1"
        await until(lambda: idp.calls == 2 and src._refreshing is None)
        for _ in range(10):  # not a renewal per request
            assert await src.header_value() == "Bearer tok-1"
            await asyncio.sleep(0)
        assert idp.calls == 2
        assert src.current is not None
        assert src.current.refresh_at == clock.time() + RETRY_REFRESH
        assert src.current.expires_at == expires_at
        clock.advance(RETRY_REFRESH)
        idp.status = 200
        assert await src.header_value() == "Bearer tok-1"
        await until(lambda: src.current is not None and src.current.header_value.endswith("3"))
        assert await src.header_value() == "Bearer tok-3"

    run(body, idp)
    assert idp.calls == 3
    assert metrics.idp_requests == {"ok": 2, "status": 1}
    assert RETRY_REFRESH == 1.0


def test_a_token_that_expires_while_renewals_fail_is_a_miss(idp: IdP, clock: FakeClock) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        src = source(idp, http, clock)
        await src.header_value()
        clock.advance(72)
        idp.status = 500
        await src.header_value()
        await until(lambda: idp.calls == 2 and src._refreshing is None)
        clock.advance(30)  # past the expiry
        with pytest.raises(IdpError):
            await src.header_value()

    run(body, idp)


def test_a_purge_during_a_refresh_keeps_the_fresh_token(idp: IdP, clock: FakeClock) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        src = source(idp, http, clock)
        await src.header_value()
        clock.advance(72)
        idp.gate = asyncio.Event()
        await src.header_value()
        await until(lambda: idp.calls == 2)
        src.purge()
        waiting = asyncio.ensure_future(src.header_value())  # joins the renewal
        idp.gate.set()
        assert await waiting == "Bearer tok-2"

    run(body, idp)
    assert idp.calls == 2


# --- across nodes: the shared store -----------------------------------------------------------


def test_two_nodes_share_one_idp_request(idp: IdP, clock: FakeClock, store: SqliteStore) -> None:
    async def body(http: httpx.AsyncClient) -> list[str]:
        idp.gate = asyncio.Event()
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, shared=store)
        calls = [asyncio.ensure_future(n.header_value()) for n in (node_a, node_b) * 10]
        await until(lambda: idp.calls == 1)
        await asyncio.sleep(0.12)  # the waiting node polls the store meanwhile
        assert idp.calls == 1
        idp.gate.set()
        return await asyncio.gather(*calls)

    assert run(body, idp) == ["Bearer tok-1"] * 20
    assert idp.calls == 1


def test_a_token_put_by_one_node_is_used_by_the_other(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    metrics_b = Metrics()

    async def body(http: httpx.AsyncClient) -> str:
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, metrics_b, shared=store)
        await node_a.header_value()
        stored = await store.get(NAMESPACE, KEY)
        assert stored is not None
        assert CachedToken.from_json(stored) == node_a.current
        value = await node_b.header_value()
        assert node_b.current == node_a.current
        return value

    assert run(body, idp) == "Bearer tok-1"
    assert idp.calls == 1
    assert metrics_b.token_cache == {"miss": 1}
    assert metrics_b.idp_requests == {}


def test_the_stored_copy_expires_with_the_token(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    async def body(http: httpx.AsyncClient) -> str:
        await source(idp, http, clock, shared=store).header_value()
        clock.advance(95)
        assert await store.get(NAMESPACE, KEY) is None
        return await source(idp, http, clock, shared=store).header_value()

    assert run(body, idp) == "Bearer tok-2"


def test_a_bad_stored_copy_is_ignored(idp: IdP, clock: FakeClock, store: SqliteStore) -> None:
    async def body(http: httpx.AsyncClient) -> str:
        await store.put(NAMESPACE, KEY, b"{not json")
        return await source(idp, http, clock, shared=store).header_value()

    assert run(body, idp) == "Bearer tok-1"


def test_the_lock_is_released_after_a_failure(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    async def body(http: httpx.AsyncClient) -> str:
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, shared=store)
        idp.status = 500
        with pytest.raises(IdpError) as info:
            await node_a.header_value()
        assert info.value.kind == "status"
        lock = f"{NAMESPACE}:{KEY}"
        assert await store.acquire(lock, "someone-else", 5.0)
        assert await store.release(lock, "someone-else")
        idp.status = 200
        return await asyncio.wait_for(node_b.header_value(), 2)

    assert run(body, idp) == "Bearer tok-2"
    assert idp.calls == 2


def test_a_failure_reaches_the_waiting_node_as_its_own_try(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    async def body(http: httpx.AsyncClient) -> tuple[Any, Any]:
        idp.gate = asyncio.Event()
        idp.status = 500
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, shared=store)
        a = asyncio.ensure_future(node_a.header_value())
        await until(lambda: idp.calls == 1)
        b = asyncio.ensure_future(node_b.header_value())
        await asyncio.sleep(0.06)
        idp.gate.set()
        return tuple(await asyncio.gather(a, b, return_exceptions=True))  # type: ignore[return-value]

    a, b = run(body, idp)
    assert isinstance(a, IdpError) and isinstance(b, IdpError)
    assert idp.calls == 2  # node b took the released lock and asked itself


def test_purge_shared_deletes_the_stored_copy(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    async def body(http: httpx.AsyncClient) -> str:
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, shared=store)
        await node_a.header_value()
        node_a.purge()
        await node_a.purge_shared()
        assert await store.get(NAMESPACE, KEY) is None
        return await node_b.header_value()

    assert run(body, idp) == "Bearer tok-2"
    assert idp.calls == 2


def test_a_node_renewing_ahead_takes_the_token_another_node_renewed(
    idp: IdP, clock: FakeClock, store: SqliteStore
) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        node_a = source(idp, http, clock, shared=store)
        node_b = source(idp, http, clock, shared=store)
        await node_a.header_value()
        await node_b.header_value()
        clock.advance(72)
        assert await node_a.header_value() == "Bearer tok-1"
        await until(lambda: node_a.current is not None and "tok-2" in node_a.current.header_value)
        assert await node_b.header_value() == "Bearer tok-1"  # renewing in the background
        await until(lambda: node_b.current is not None and "tok-2" in node_b.current.header_value)
        await until(lambda: node_b._refreshing is None)

    run(body, idp)
    assert idp.calls == 2
