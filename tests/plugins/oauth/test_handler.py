"""OAuthStep on protected requests: 401/403 answers and their headers, what goes upstream, route
scoping, allow lists, required scopes with gateway-held keys, revocation and a store outage."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import orjson
import pytest

from bastion.errors import ConfigError
from bastion.gateway.responses import Response
from bastion.plugins.base import PluginDeps
from bastion.plugins.oauth.handler import OAuthPlugin
from bastion.plugins.oauth.revocation import revoke
from bastion.plugins.oauth.schema import OAuthConfig
from bastion.plugins.oauth.step import OAuthStep, _is_bearer
from bastion.store.base import StoreUnavailable
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import (
    CONSUMERS,
    ID2,
    SECRET1,
    SECRET2,
    TYP,
    Ctx,
    DownStore,
    FakeClock,
    bearer,
    claims,
    fetch_token,
    forge,
    forge_raw,
    headers_of,
    instance_step,
    make_plugin,
    rule_step,
)

TEXT = "text/plain; charset=utf-8"


def call(step: OAuthStep, ctx: Ctx) -> Response | None:
    return asyncio.run(step.on_request(ctx))


def assert_401(response: Response | None, error: bool = True, realm: str = "/api/items") -> None:
    assert response is not None
    assert (response.status, response.body) == (401, b"Invalid Jwt token")
    challenge = f'Bearer realm="{realm}"' + (', error="invalid_token"' if error else "")
    assert headers_of(response) == {"content-type": TEXT, "www-authenticate": challenge}


def assert_403(response: Response | None) -> None:
    assert response is not None
    assert (response.status, response.body) == (403, b"Access Denied")
    assert headers_of(response) == {"content-type": TEXT}


def assert_forwarded(ctx: Ctx, response: Response | None, consumer: str = "consumer1") -> None:
    assert response is None
    assert ctx.consumer == consumer
    assert ctx.headers_set_upstream()
    assert ctx.headers_set_upstream()[b"x-mse-consumer"] == (b"X-Mse-Consumer", consumer.encode())
    for key, (_, value) in ctx.headers_set_upstream().items():
        # besides the consumer, only the verified auth header itself, as the client sent it
        # (a repeated copy of it must not reach the upstream)
        assert key == b"x-mse-consumer" or ctx.lookup[key] == value, key


# --- building ---------------------------------------------------------------------------------


def test_the_plugin_needs_the_store(clock: FakeClock) -> None:
    config = OAuthConfig.model_validate({"consumers": CONSUMERS})
    with pytest.raises(ConfigError):
        OAuthPlugin(config, PluginDeps(clock=clock, store=None))


def test_bind_returns_a_request_step(store: SqliteStore, clock: FakeClock) -> None:
    plugin = make_plugin(store, clock)
    step = instance_step(plugin)
    assert step.handles_request
    assert isinstance(rule_step(plugin, allow=["consumer1"]), OAuthStep)


# --- 401 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, False),  # no token: no error param (RFC 6750 §3.1)
        ({"Authorization": "Basic dXNlcjpwYXNz"}, True),
        ({"Authorization": "Token abc"}, True),
        ({"Authorization": "Bearer"}, True),
        ({"Authorization": ""}, True),
        ({"Authorization": "Bearer "}, True),
        ({"Authorization": "Bearer not-a-jwt"}, True),
        ({"X-Token": "Bearer x"}, False),  # another header is no token
    ],
)
def test_missing_or_unusable_authorization(
    store: SqliteStore, clock: FakeClock, headers: dict[str, str], error: bool
) -> None:
    ctx = Ctx(headers=headers)
    assert_401(call(instance_step(make_plugin(store, clock)), ctx), error)
    assert ctx.headers_set_upstream() == {} and ctx.consumer is None


BAD_TOKENS: list[tuple[str, Any]] = [
    ("wrong secret", lambda c: forge(claims(c), SECRET2)),
    ("alg none", lambda c: forge(claims(c), None, alg="none")),
    ("HS512", lambda c: forge(claims(c), alg="HS512")),
    ("RS256 header", lambda c: forge_raw({"alg": "RS256", "typ": TYP}, claims(c), SECRET1)),
    ("missing typ", lambda c: forge(claims(c), headers={"typ": None})),
    ("typ JWT", lambda c: forge(claims(c), headers={"typ": "JWT"})),
    ("expired", lambda c: forge(claims(c, iat=int(c.time()) - 8000, exp=int(c.time()) - 61))),
    ("future iat", lambda c: forge(claims(c, iat=int(c.time()) + 61, exp=int(c.time()) + 7000))),
    ("too long-lived", lambda c: forge(claims(c, exp=int(c.time()) + 7261))),
    ("missing jti", lambda c: forge(claims(c, jti=None))),
    ("wrong iss", lambda c: forge(claims(c, iss="x"))),
    ("wrong sub", lambda c: forge(claims(c, sub="consumer2"))),
    ("unknown client_id", lambda c: forge({**claims(c), "client_id": "nobody"})),
    ("crit", lambda c: forge(claims(c), headers={"typ": TYP, "crit": ["x"], "x": 1})),
    ("garbage", lambda c: "garbage"),
    ("too long", lambda c: forge(claims(c, pad="x" * 9000))),
]


@pytest.mark.parametrize("forger", [f for _, f in BAD_TOKENS], ids=[n for n, _ in BAD_TOKENS])
def test_bad_tokens_get_401_invalid_token(
    store: SqliteStore, clock: FakeClock, forger: Any
) -> None:
    ctx = Ctx(headers=bearer(forger(clock)))
    assert_401(call(instance_step(make_plugin(store, clock)), ctx))
    assert ctx.headers_set_upstream() == {} and ctx.consumer is None


def test_realm_is_the_path_without_query_at_most_256(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    assert_401(call(step, Ctx(path="/p", query=f"client_secret={SECRET1}")), False, "/p")
    long_path = "/" + "a" * 300
    assert_401(call(step, Ctx(path=long_path)), False, long_path[:256])


def test_realm_quotes_are_escaped(store: SqliteStore, clock: FakeClock) -> None:
    response = call(instance_step(make_plugin(store, clock)), Ctx(path='/a"b\\c'))
    assert response is not None
    assert headers_of(response)["www-authenticate"] == 'Bearer realm="/a\\"b\\\\c"'


# --- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_valid_token_is_forwarded_with_x_mse_consumer(
    store: SqliteStore, clock: FakeClock, scheme: str
) -> None:
    step = instance_step(make_plugin(store, clock))
    token = asyncio.run(fetch_token(step))
    ctx = Ctx(headers={"Authorization": f"{scheme} {token}"})
    assert_forwarded(ctx, call(step, ctx))
    assert ctx.upstream_remove is None  # keep_token true


def test_client_sent_x_mse_consumer_is_replaced(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    ctx = Ctx(headers={**bearer(forge(claims(clock))), "X-Mse-Consumer": "admin"})
    assert_forwarded(ctx, call(step, ctx))


def test_a_token_the_consumer_minted_itself_is_valid(store: SqliteStore, clock: FakeClock) -> None:
    """Higress compatibility: HS256 keyed by the client_secret; any JOSE library can mint one."""
    step = instance_step(make_plugin(store, clock))
    ctx = Ctx(headers=bearer(forge(claims(clock, ID2), SECRET2)))
    assert_forwarded(ctx, call(step, ctx), "consumer2")


def test_keep_token_false_strips_the_header(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock, keep_token=False))
    ctx = Ctx(headers=bearer(forge(claims(clock))))
    assert_forwarded(ctx, call(step, ctx))
    assert ctx.upstream_remove == {b"authorization"}


@pytest.mark.parametrize("field", ["auth_header_name", "auth_header"])
def test_custom_auth_header(store: SqliteStore, clock: FakeClock, field: str) -> None:
    step = instance_step(make_plugin(store, clock, **{field: "X-Token"}, keep_token=False))
    token = forge(claims(clock))
    ctx = Ctx(headers=bearer(token, "x-token"))
    assert_forwarded(ctx, call(step, ctx))
    # the header and its `_` spelling, which CGI-style upstreams read as the same name
    assert ctx.upstream_remove == {b"x-token", b"x_token"}
    assert_401(call(step, Ctx(headers=bearer(token))), error=False)  # Authorization is ignored


def test_verified_tokens_are_cached(store: SqliteStore, clock: FakeClock, monkeypatch: Any) -> None:
    step = instance_step(make_plugin(store, clock))
    calls: list[str] = []
    verify = step.codec.verify

    def counting(token: str) -> Any:
        calls.append(token)
        return verify(token)

    monkeypatch.setattr(step.codec, "verify", counting)
    token = forge(claims(clock))
    for _ in range(3):
        assert call(step, Ctx(headers=bearer(token))) is None
    assert len(calls) == 1


def test_a_cached_token_still_expires(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock, token_ttl=100, clock_skew_seconds=5))
    token = asyncio.run(fetch_token(step))
    assert call(step, Ctx(headers=bearer(token))) is None
    clock.advance(105)
    assert call(step, Ctx(headers=bearer(token))) is None
    clock.advance(1)
    assert_401(call(step, Ctx(headers=bearer(token))))


# --- 403: allow and route scoping -------------------------------------------------------------


def test_allow_list(store: SqliteStore, clock: FakeClock) -> None:
    step = rule_step(make_plugin(store, clock), allow=["consumer1"])
    ctx = Ctx(headers=bearer(forge(claims(clock))))
    assert_forwarded(ctx, call(step, ctx))
    ctx = Ctx(headers=bearer(forge(claims(clock, ID2), SECRET2)))
    assert_403(call(step, ctx))
    assert ctx.headers_set_upstream() == {} and ctx.consumer is None


def test_empty_allow_denies_everyone(store: SqliteStore, clock: FakeClock) -> None:
    step = rule_step(make_plugin(store, clock), allow=[])
    assert_403(call(step, Ctx(headers=bearer(forge(claims(clock))))))


def test_a_bad_token_is_401_before_allow(store: SqliteStore, clock: FakeClock) -> None:
    step = rule_step(make_plugin(store, clock), allow=["consumer1"])
    assert_401(call(step, Ctx(headers=bearer(forge(claims(clock, ID2), SECRET1)))))


def test_token_endpoint_on_an_allow_rule_issues_to_every_consumer(
    store: SqliteStore, clock: FakeClock
) -> None:
    step = rule_step(make_plugin(store, clock), allow=["consumer1"])
    token = asyncio.run(fetch_token(step, ID2, SECRET2))
    assert_403(call(step, Ctx(headers=bearer(token))))


def test_route_scoped_tokens(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock, global_credentials=False))
    token = asyncio.run(fetch_token(step, route="route-a"))
    ctx = Ctx(headers=bearer(token), route="route-a")
    assert_forwarded(ctx, call(step, ctx))
    assert_403(call(step, Ctx(headers=bearer(token), route="route-b")))


def test_route_scoped_refuses_default_audience(store: SqliteStore, clock: FakeClock) -> None:
    shared = instance_step(make_plugin(store, clock))
    token = asyncio.run(fetch_token(shared))  # aud "default"
    scoped = instance_step(make_plugin(store, clock, global_credentials=False))
    assert_403(call(scoped, Ctx(headers=bearer(token), route="api")))


def test_global_credentials_accept_any_audience(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    for aud in ["default", "route-a", "anything"]:
        ctx = Ctx(headers=bearer(forge(claims(clock, aud=aud))), route="route-b")
        assert_forwarded(ctx, call(step, ctx))


def test_route_scoped_rule_with_its_own_consumers(store: SqliteStore, clock: FakeClock) -> None:
    plugin = make_plugin(store, clock, consumers=None, global_auth=False)
    step = rule_step(plugin, consumers=[CONSUMERS[1]], global_credentials=False)
    token = asyncio.run(fetch_token(step, ID2, SECRET2, route="api"))
    ctx = Ctx(headers=bearer(token), route="api")
    assert_forwarded(ctx, call(step, ctx), "consumer2")
    assert_401(call(step, Ctx(headers=bearer(forge(claims(clock))))))  # consumer1 unknown here


# --- required scopes with gateway-held keys ---------------------------------------------------


def signed_plugin(store: SqliteStore, clock: FakeClock) -> OAuthPlugin:
    return make_plugin(store, clock, signing={"alg": "ES256"})


def jwks_key(plugin: OAuthPlugin, kid: str) -> Any:
    endpoint = plugin.endpoints()["/.well-known/jwks.json"]
    response = asyncio.run(endpoint.on_request(Ctx(path="/.well-known/jwks.json")))
    assert response is not None and response.status == 200
    keys = {k["kid"]: k for k in orjson.loads(response.body)["keys"]}
    return jwt.PyJWK(keys[kid]).key


def test_signing_issues_tokens_upstreams_verify_with_the_jwks(
    store: SqliteStore, clock: FakeClock
) -> None:
    plugin = signed_plugin(store, clock)
    token = asyncio.run(fetch_token(instance_step(plugin), ID2, SECRET2, scope="read"))
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("ES256", TYP)
    payload = jwt.decode(token, jwks_key(plugin, header["kid"]), algorithms=["ES256"],
                         audience="default")  # fmt: skip
    assert (payload["sub"], payload["scope"]) == ("consumer2", "read")
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, SECRET2, algorithms=["HS256"], audience="default")


def test_required_scopes(store: SqliteStore, clock: FakeClock) -> None:
    plugin = signed_plugin(store, clock)
    step = rule_step(plugin, required_scopes=["read", "write"])
    both = asyncio.run(fetch_token(step, ID2, SECRET2, scope="write read"))
    ctx = Ctx(headers=bearer(both))
    assert_forwarded(ctx, call(step, ctx), "consumer2")
    for scope in ["read", None]:
        extra = {"scope": scope} if scope else {}
        token = asyncio.run(fetch_token(step, ID2, SECRET2, **extra))
        response = call(step, Ctx(headers=bearer(token)))
        assert response is not None and (response.status, response.body) == (403, b"Access Denied")
        assert headers_of(response) == {
            "content-type": TEXT,
            "www-authenticate": 'Bearer error="insufficient_scope", scope="read write"',
        }


def test_with_signing_a_consumer_cannot_mint_scopes(store: SqliteStore, clock: FakeClock) -> None:
    step = rule_step(signed_plugin(store, clock), required_scopes=["read"])
    forged = forge(claims(clock, ID2, scope="read"), SECRET2)  # HS256 with its own secret
    assert_401(call(step, Ctx(headers=bearer(forged))))


# --- revocation -------------------------------------------------------------------------------


def test_revoked_token_is_refused_within_a_second_even_cached(
    store: SqliteStore, clock: FakeClock
) -> None:
    step = instance_step(make_plugin(store, clock))
    token, other = asyncio.run(fetch_token(step)), asyncio.run(fetch_token(step, ID2, SECRET2))
    for t in (token, other):
        assert call(step, Ctx(headers=bearer(t))) is None  # verified and cached
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert asyncio.run(revoke(store, [jti], 8000)) == 1
    clock.mono += 1.0
    assert_401(call(step, Ctx(headers=bearer(token))))
    assert call(step, Ctx(headers=bearer(other))) is None


def test_revocation_seen_by_another_node(store: SqliteStore, clock: FakeClock) -> None:
    node_a, node_b = (
        instance_step(make_plugin(store, clock)),
        instance_step(make_plugin(store, clock)),
    )
    token = asyncio.run(fetch_token(node_a))
    assert call(node_b, Ctx(headers=bearer(token))) is None
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    asyncio.run(revoke(store, [jti], 8000))
    clock.mono += 1.01
    assert_401(call(node_b, Ctx(headers=bearer(token))))
    assert_401(call(node_a, Ctx(headers=bearer(token))))


def test_a_token_revoked_before_its_first_use_is_refused(
    store: SqliteStore, clock: FakeClock
) -> None:
    step = instance_step(make_plugin(store, clock))
    token = asyncio.run(fetch_token(step))
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    asyncio.run(revoke(store, [jti], 8000))
    assert_401(call(step, Ctx(headers=bearer(token))))


# --- store outage -----------------------------------------------------------------------------


class SwitchableStore:
    """The real store, until `down` is set."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.down = False
        self.backend = store.backend

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)

        async def verb(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("down (test)")
            return await real(*args, **kwargs)

        return verb


def test_store_unavailable_propagates(clock: FakeClock) -> None:
    step = instance_step(make_plugin(DownStore(), clock))
    with pytest.raises(StoreUnavailable):  # the pipeline answers 503
        call(step, Ctx(headers=bearer(forge(claims(clock)))))


def test_store_down_fails_closed_even_for_a_cached_token(
    store: SqliteStore, clock: FakeClock
) -> None:
    switch = SwitchableStore(store)
    step = instance_step(make_plugin(switch, clock))
    token = forge(claims(clock))
    assert call(step, Ctx(headers=bearer(token))) is None
    switch.down = True
    clock.mono += 1.0
    with pytest.raises(StoreUnavailable):
        call(step, Ctx(headers=bearer(token)))
    switch.down = False
    assert call(step, Ctx(headers=bearer(token))) is None  # back as soon as the store is


def test_missing_token_needs_no_store(clock: FakeClock) -> None:
    assert_401(call(instance_step(make_plugin(DownStore(), clock)), Ctx()), error=False)


@pytest.mark.parametrize(
    ("value", "bearer"),
    [
        (b"Bearer abc", True),
        (b"bearer abc", True),
        (b"BEARER abc", True),
        (b"bEaReR abc", True),
        (b"Bearer ", True),
        (b"Bearer", False),
        (b"Bearerabc", False),
        (b"Basic abc", False),
        (b"", False),
    ],
)
def test_the_bearer_scheme_is_case_insensitive(value: bytes, bearer: bool) -> None:
    assert _is_bearer(value) is bearer
