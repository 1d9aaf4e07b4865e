"""UpstreamOAuthStep and UpstreamOAuthPlugin: the token set upstream, the templated IdP error, the
purge and retry on an upstream status, sources shared by identical settings, the token request
the plugin builds, purges seen through the store, config errors and closing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bastion.errors import ConfigError
from bastion.gateway.context import ResponseHead, upstream_pair
from bastion.gateway.responses import Response
from bastion.ops.metrics import Metrics
from bastion.plugins.base import PluginDeps
from bastion.plugins.upstream_oauth import handler
from bastion.plugins.upstream_oauth.cache import NAMESPACE as TOKENS
from bastion.plugins.upstream_oauth.cache import cache_key
from bastion.plugins.upstream_oauth.handler import (
    UpstreamOAuthPlugin,
    UpstreamOAuthStep,
    render_error,
)
from bastion.plugins.upstream_oauth.purge import publish_purge
from bastion.plugins.upstream_oauth.schema import UpstreamOAuthConfig
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import Ctx, DownStore, FakeClock, headers_of

ENDPOINT = "https://idp.example.com/oauth2/token"
OAUTH: dict[str, Any] = {"token_endpoint": ENDPOINT, "client_id": "gw", "client_secret": "s3cret"}
JSON = "application/json; charset=utf-8"
IGNORE_IMPLICIT = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


class RedisLike(SqliteStore):
    """The real SQLite store under Redis's name: the same Store protocol, for the redis strategy."""

    backend = "redis"


class IdP:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Callable[[int], httpx.Response] = lambda n: httpx.Response(
            200, json={"access_token": f"tok-{n}", "token_type": "Bearer", "expires_in": 300}
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(len(self.requests))

    def form(self, i: int = 0) -> dict[str, str]:
        return dict(parse_qsl(self.requests[i].content.decode()))


def make_config(**groups: Any) -> UpstreamOAuthConfig:
    return UpstreamOAuthConfig.model_validate(
        {"oauth": {**OAUTH, **groups.pop("oauth", {})}, **groups}
    )


def make_plugin(
    idp: IdP, clock: FakeClock, store: Any = None, metrics: Metrics | None = None, **groups: Any
) -> UpstreamOAuthPlugin:
    config = make_config(**groups)
    deps = PluginDeps(clock=clock, store=store, metrics=metrics or Metrics())
    plugin = UpstreamOAuthPlugin(config, deps)
    mock = httpx.AsyncClient(transport=httpx.MockTransport(idp.handle))
    plugin.clients[config.client] = mock  # what _http would build, on a fake transport
    return plugin


def bind(
    plugin: UpstreamOAuthPlugin, config: UpstreamOAuthConfig | None = None
) -> UpstreamOAuthStep:
    step = plugin.bind(config or plugin.config)  # type: ignore[arg-type]
    assert isinstance(step, UpstreamOAuthStep)
    return step


def sent(ctx: Ctx, name: str = "Authorization") -> str | None:
    if ctx.headers_set_upstream() == {}:
        return None
    found = ctx.headers_set_upstream().get(name.lower().encode())
    return found[1].decode() if found else None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp() -> IdP:
    return IdP()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[RedisLike]:
    sqlite = RedisLike(tmp_path / "s.db", clock=clock.time)
    yield sqlite
    asyncio.run(sqlite.aclose())


# --- render_error -----------------------------------------------------------------------------


def test_the_default_error_is_kongs() -> None:
    response = render_error(make_config())
    assert response.status == 502
    assert orjson.loads(response.body) == {
        "code": "502",
        "message": "Failed to authenticate request to upstream",
    }
    assert (
        response.body
        == b'{ "code": "502", "message": "Failed to authenticate request to upstream" }'
    )
    assert headers_of(response) == {"content-type": JSON}


def test_the_message_is_json_escaped() -> None:
    message = 'the "IdP" said \\ no\nand é'
    config = make_config(
        behavior={"idp_error_response_message": message, "idp_error_response_status_code": 503}
    )
    response = render_error(config)
    assert orjson.loads(response.body) == {"code": "503", "message": message}


def test_a_custom_template_and_content_type() -> None:
    config = make_config(
        behavior={
            "idp_error_response_status_code": 504,
            "idp_error_response_content_type": "text/plain",
            "idp_error_response_message": 'say "hi"',
            "idp_error_response_body_template": "{{status}} / {{message}} / {{status}} {{other}}",
        }
    )
    response = render_error(config)
    assert response.status == 504
    assert response.body == b'504 / say \\"hi\\" / 504 {{other}}'
    assert headers_of(response) == {"content-type": "text/plain"}


# --- on_request -------------------------------------------------------------------------------


def test_the_token_is_set_upstream(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()
    plugin = make_plugin(idp, clock, metrics=metrics)
    step = bind(plugin)

    async def go() -> list[str | None]:
        values = []
        for _ in range(3):
            ctx = Ctx(headers={"Authorization": "Bearer client-token"})
            assert await step.on_request(ctx) is None
            values.append(sent(ctx))
        await plugin.aclose()
        return values

    assert asyncio.run(go()) == ["Bearer tok-1"] * 3
    assert len(idp.requests) == 1
    assert metrics.token_cache == {"miss": 1, "hit": 2}


def test_a_cached_tokens_header_is_made_once(
    idp: IdP, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def counted(name: str, value: str) -> tuple[bytes, tuple[bytes, bytes]]:
        made.append(value)
        return upstream_pair(name, value)

    monkeypatch.setattr(handler, "upstream_pair", counted)
    plugin = make_plugin(idp, clock)
    step = bind(plugin)

    async def go() -> list[str | None]:
        values = []
        for n in range(4):
            ctx = Ctx()
            if n == 2:  # an upstream 401: the next request gets a new token
                step.on_response(ctx, ResponseHead(401, []))
            elif step.on_request_now(ctx) is not None:
                await step.on_request(ctx)  # no token cached yet: fetched
            values.append(sent(ctx))
        await plugin.aclose()
        return values

    assert asyncio.run(go()) == ["Bearer tok-1", "Bearer tok-1", None, "Bearer tok-2"]
    assert made == ["Bearer tok-1", "Bearer tok-2"]  # checked and encoded once per token


def test_a_configured_header_and_the_idps_casing(idp: IdP, clock: FakeClock) -> None:
    idp.answer = lambda n: httpx.Response(200, json={"access_token": "abc", "token_type": "bearer"})
    plugin = make_plugin(
        idp, clock, behavior={"upstream_access_token_header_name": "X-Upstream-Token"}
    )
    step = bind(plugin)
    ctx = Ctx()

    async def go() -> Response | None:
        try:
            return await step.on_request(ctx)
        finally:
            await plugin.aclose()

    assert asyncio.run(go()) is None
    assert ctx.headers_set_upstream() == {b"x-upstream-token": (b"X-Upstream-Token", b"bearer abc")}


@pytest.mark.parametrize(
    "answer",
    [
        lambda n: httpx.Response(500, json={"error": "server_error"}),
        lambda n: httpx.Response(200, content=b"<html>"),
        lambda n: httpx.Response(200, json={"token_type": "Bearer"}),
    ],
)
def test_an_idp_failure_answers_the_configured_error(
    idp: IdP, clock: FakeClock, answer: Callable[[int], httpx.Response]
) -> None:
    idp.answer = answer
    plugin = make_plugin(
        idp,
        clock,
        behavior={"idp_error_response_status_code": 503, "idp_error_response_message": "no"},
    )
    step = bind(plugin)
    ctx = Ctx()

    async def go() -> Response | None:
        try:
            return await step.on_request(ctx)
        finally:
            await plugin.aclose()

    response = asyncio.run(go())
    assert response is not None
    assert response.status == 503
    assert orjson.loads(response.body) == {"code": "503", "message": "no"}
    assert headers_of(response) == {"content-type": JSON}
    assert ctx.headers_set_upstream() == {}  # nothing goes upstream without its token


def test_a_network_failure_answers_502(clock: FakeClock) -> None:
    idp = IdP()

    def refuse(n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    idp.answer = refuse
    plugin = make_plugin(idp, clock)
    step = bind(plugin)

    async def go() -> Response | None:
        try:
            return await step.on_request(Ctx())
        finally:
            await plugin.aclose()

    response = asyncio.run(go())
    assert response is not None and response.status == 502


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "tök€n"])
def test_a_token_that_cannot_be_a_header_is_an_idp_error(
    idp: IdP, clock: FakeClock, token: str
) -> None:
    idp.answer = lambda n: httpx.Response(200, json={"access_token": token})
    plugin = make_plugin(idp, clock)
    step = bind(plugin)

    async def go() -> Response | None:
        try:
            return await step.on_request(Ctx())
        finally:
            await plugin.aclose()

    response = asyncio.run(go())
    assert response is not None and response.status == 502


# --- on_response: purge and retry ---------------------------------------------------------------


def test_a_listed_upstream_status_purges_and_asks_for_a_retry(idp: IdP, clock: FakeClock) -> None:
    metrics = Metrics()
    plugin = make_plugin(idp, clock, metrics=metrics)
    step = bind(plugin)

    async def go() -> list[str | None]:
        ctx = Ctx()
        await step.on_request(ctx)
        step.on_response(ctx, ResponseHead(401, []))
        assert ctx.retry_wanted
        assert step.source.current is None
        retried = Ctx()
        await step.on_request(retried)  # the pipeline runs the request plugins again
        await plugin.aclose()
        return [sent(ctx), sent(retried)]

    assert asyncio.run(go()) == ["Bearer tok-1", "Bearer tok-2"]
    assert len(idp.requests) == 2
    assert metrics.token_cache == {"miss": 2, "purged": 1}


@pytest.mark.parametrize(
    ("purge_on", "status", "purged"),
    [
        (None, 200, False),
        (None, 403, False),
        (None, 500, False),
        ([], 401, False),
        ([401, 403], 403, True),
        ([502], 502, True),
        ([502], 401, False),
    ],
)
def test_only_listed_statuses_purge(
    idp: IdP, clock: FakeClock, purge_on: list[int] | None, status: int, purged: bool
) -> None:
    behavior = {} if purge_on is None else {"purge_token_on_upstream_status_codes": purge_on}
    plugin = make_plugin(idp, clock, behavior=behavior)
    step = bind(plugin)
    ctx = Ctx()

    async def go() -> None:
        await step.on_request(ctx)
        step.on_response(ctx, ResponseHead(status, []))
        await plugin.aclose()

    asyncio.run(go())
    assert ctx.retry_wanted is purged
    assert (step.source.current is None) is purged
    assert (status in step.response_statuses()) is purged  # the pipeline skips the others
    assert plugin.deps.metrics.token_cache.get("purged", 0) == int(purged)


def test_a_purge_also_deletes_the_shared_copy(idp: IdP, clock: FakeClock, store: RedisLike) -> None:
    plugin = make_plugin(idp, clock, store=store, cache={"strategy": "redis"})
    step = bind(plugin)
    assert step.source.shared is store
    key = cache_key(plugin.config.oauth)  # type: ignore[attr-defined]

    async def go() -> None:
        ctx = Ctx()
        await step.on_request(ctx)
        assert await store.get(TOKENS, key) is not None
        step.on_response(ctx, ResponseHead(401, []))
        deadline = time.monotonic() + 2
        while plugin.tasks:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        assert await store.get(TOKENS, key) is None
        await plugin.aclose()

    asyncio.run(go())


# --- sources ----------------------------------------------------------------------------------


def test_identical_oauth_settings_share_one_source(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(idp, clock, oauth={"scopes": ["a", "b"]})
    first = bind(plugin)
    same = bind(
        plugin,
        make_config(
            oauth={"scopes": ["b", "a"]}, behavior={"upstream_access_token_header_name": "X-T"}
        ),
    )
    other_secret = bind(plugin, make_config(oauth={"scopes": ["a", "b"], "client_secret": "new"}))
    assert same.source is first.source
    assert same.header == "X-T"
    assert other_secret.source is not first.source
    asyncio.run(plugin.aclose())


def test_memory_and_redis_strategies_do_not_share_a_source(
    idp: IdP, clock: FakeClock, store: RedisLike
) -> None:
    plugin = make_plugin(idp, clock, store=store)
    memory = bind(plugin)
    shared = bind(plugin, make_config(cache={"strategy": "redis"}))
    assert memory.source is not shared.source
    assert (memory.source.shared, shared.source.shared) == (None, store)
    asyncio.run(plugin.aclose())


def test_two_routes_with_one_source_make_one_idp_request(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(idp, clock)
    one, two = bind(plugin), bind(plugin, make_config())

    async def go() -> None:
        await asyncio.gather(*(s.on_request(Ctx()) for s in (one, two) * 10))
        await plugin.aclose()

    asyncio.run(go())
    assert len(idp.requests) == 1


def test_the_token_request(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(
        idp,
        clock,
        oauth={
            "scopes": ["read", "write"],
            "audience": ["billing", "api"],
            "token_post_args": {"grant_type": "evil", "scope": "evil", "resource": "r1"},
            "token_headers": {"X-Tenant": "acme"},
        },
    )
    step = bind(plugin)

    async def go() -> None:
        await step.on_request(Ctx())
        await plugin.aclose()

    asyncio.run(go())
    [request] = idp.requests
    assert str(request.url) == ENDPOINT
    assert request.headers["x-tenant"] == "acme"
    assert idp.form() == {
        "resource": "r1",
        "grant_type": "client_credentials",  # the standard fields win over the extra args
        "scope": "read write",
        "audience": "billing api",
        "client_id": "gw",
        "client_secret": "s3cret",
    }


def test_the_password_grant_and_no_scopes(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(
        idp,
        clock,
        oauth={"grant_type": "password", "username": "svc", "password": "pw", "scopes": []},
        client={"auth_method": "client_secret_basic"},
    )
    step = bind(plugin)

    async def go() -> None:
        await step.on_request(Ctx())
        await plugin.aclose()

    asyncio.run(go())
    assert idp.form() == {"grant_type": "password", "username": "svc", "password": "pw"}
    assert idp.requests[0].headers["authorization"].startswith("Basic ")


def test_the_client_settings_shape_the_http_client(clock: FakeClock) -> None:
    config = make_config(client={"timeout": 2500, "ssl_verify": False})
    plugin = UpstreamOAuthPlugin(config, PluginDeps(clock=clock))
    step = bind(plugin)
    http = step.source.http
    assert http.timeout == httpx.Timeout(2.5)
    assert plugin.clients == {config.client: http}
    asyncio.run(plugin.aclose())


# --- purges seen through the store --------------------------------------------------------------


def test_a_published_purge_drops_the_token_on_this_node(
    idp: IdP, clock: FakeClock, store: RedisLike
) -> None:
    plugin = make_plugin(idp, clock, store=store)
    step = bind(plugin)
    other = bind(plugin, make_config(oauth={"client_id": "other"}))

    async def go() -> None:
        await step.on_request(Ctx())
        await other.on_request(Ctx())
        await publish_purge(store, [step.source.key])
        await step.on_request(Ctx())  # within the poll interval: not seen yet
        assert len(idp.requests) == 2
        clock.advance(1.0)
        ctx = Ctx()
        await step.on_request(ctx)
        assert sent(ctx) == "Bearer tok-3"
        assert other.source.current is not None
        await plugin.aclose()

    asyncio.run(go())
    assert len(idp.requests) == 3


def test_the_store_down_does_not_stop_tokens(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(idp, clock, store=DownStore())
    step = bind(plugin)
    ctx = Ctx()

    async def go() -> Response | None:
        try:
            return await step.on_request(ctx)
        finally:
            await plugin.aclose()

    assert asyncio.run(go()) is None
    assert sent(ctx) == "Bearer tok-1"
    assert plugin.purges is not None and not plugin.purges.stale()


def test_drop_purges_only_the_listed_keys(idp: IdP, clock: FakeClock) -> None:
    plugin = make_plugin(idp, clock)
    one = bind(plugin)
    two = bind(plugin, make_config(oauth={"client_id": "two"}))

    async def go() -> None:
        await one.on_request(Ctx())
        await two.on_request(Ctx())
        plugin.drop([one.source.key])
        assert one.source.current is None and two.source.current is not None
        plugin.drop(None)
        assert two.source.current is None
        await plugin.aclose()

    asyncio.run(go())


# --- config errors and closing ----------------------------------------------------------------


@pytest.mark.parametrize("store", [None, "sqlite"])
def test_the_redis_strategy_needs_a_redis_store(
    clock: FakeClock, tmp_path: Path, store: str | None
) -> None:
    sqlite = SqliteStore(tmp_path / "s.db") if store else None
    config = make_config(cache={"strategy": "redis"})
    plugin = UpstreamOAuthPlugin(config, PluginDeps(clock=clock, store=sqlite))
    with pytest.raises(ConfigError) as info:
        plugin.bind(config)
    assert [path for path, _ in info.value.problems] == ["cache.redis"]
    asyncio.run(plugin.aclose())
    if sqlite is not None:
        asyncio.run(sqlite.aclose())


def _pem(key: Any, public: bool = False) -> str:
    if public:
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pk_plugin(
    clock: FakeClock, pem: str, alg: str = "ES256"
) -> tuple[UpstreamOAuthPlugin, UpstreamOAuthConfig]:
    config = make_config(
        oauth={"client_secret": None},
        client={
            "auth_method": "private_key_jwt",
            "private_key": pem,
            "private_key_jwt_alg": alg,
            "kid": "k1",
        },
    )
    return UpstreamOAuthPlugin(config, PluginDeps(clock=clock)), config


@IGNORE_IMPLICIT
def test_a_public_key_is_a_config_error(clock: FakeClock) -> None:
    plugin, config = pk_plugin(clock, _pem(ec.generate_private_key(ec.SECP256R1()), public=True))
    with pytest.raises(ConfigError) as info:
        plugin.bind(config)
    assert [path for path, _ in info.value.problems] == ["client.private_key"]
    asyncio.run(plugin.aclose())


@IGNORE_IMPLICIT
def test_private_key_jwt_sends_a_signed_assertion(idp: IdP, clock: FakeClock) -> None:
    import jwt

    key = ec.generate_private_key(ec.SECP256R1())
    plugin, config = pk_plugin(clock, _pem(key))
    plugin.clients[config.client] = httpx.AsyncClient(transport=httpx.MockTransport(idp.handle))
    step = bind(plugin, config)

    async def go() -> None:
        await step.on_request(Ctx())
        await plugin.aclose()

    asyncio.run(go())
    form = idp.form()
    assert "client_secret" not in form
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "k1"
    claims = jwt.decode(form["client_assertion"], key.public_key(), ["ES256"], audience=ENDPOINT)
    assert claims["iss"] == claims["sub"] == "gw"


@IGNORE_IMPLICIT
@pytest.mark.parametrize(
    ("pem", "alg"),
    [("rsa", "ES256"), ("ec", "RS256"), ("ec", "EdDSA"), ("garbage", "RS256")],
)
def test_a_key_that_cannot_sign_with_the_alg_is_a_config_error(
    clock: FakeClock, pem: str, alg: str
) -> None:
    text = {
        "rsa": lambda: _pem(rsa.generate_private_key(65537, 2048)),
        "ec": lambda: _pem(ec.generate_private_key(ec.SECP256R1())),
        "garbage": lambda: "not a key at all",
    }[pem]()
    plugin, config = pk_plugin(clock, text, alg)
    try:
        with pytest.raises(ConfigError):
            plugin.bind(config)
    finally:
        asyncio.run(plugin.aclose())


def test_aclose_closes_the_http_clients(clock: FakeClock) -> None:
    plugin = UpstreamOAuthPlugin(make_config(), PluginDeps(clock=clock))
    bind(plugin)
    bind(plugin, make_config(oauth={"client_id": "two"}, client={"timeout": 500}))
    clients = list(plugin.clients.values())
    assert len(clients) == 2 and not any(c.is_closed for c in clients)
    asyncio.run(plugin.aclose())
    assert all(c.is_closed for c in clients)


def test_the_error_body_is_valid_json_for_any_message() -> None:
    for message in ['"', "\\", "\u2028", "{{status}}", "</script>"]:
        config = make_config(behavior={"idp_error_response_message": message})
        assert json.loads(render_error(config).body)["message"] == message
