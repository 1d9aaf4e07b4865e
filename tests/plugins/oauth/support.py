"""Shared helpers of the `oauth` plugin tests: a clock that moves on demand, a request context
with a given body, the plugin built as the gateway builds it, and tokens forged with PyJWT."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson

from bastion.config.model import Service
from bastion.errors import BodyTooLarge
from bastion.gateway.clock import Clock
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response
from bastion.gateway.route import Chain, RouteRuntime
from bastion.gateway.upstream import UpstreamPool
from bastion.plugins.base import PluginDeps, Step
from bastion.plugins.oauth.handler import OAuthPlugin
from bastion.plugins.oauth.schema import OAuthConfig, OAuthRule
from bastion.plugins.oauth.step import OAuthStep
from bastion.store.base import Store, StoreUnavailable

TYP = "application/at+jwt"
ISSUER = "Higress-Gateway"
# 64 bytes each: long enough for PyJWT's HS256 and HS512 key-length checks
SECRET1 = "abcdefgh-1111-2222-3333-" + "a" * 40
SECRET2 = "hgfedcba-4444-5555-6666-" + "b" * 40
SECRET3 = "zyxwvuts-7777-8888-9999-" + "c" * 40
ID1 = "12345678-aaaa-bbbb-cccc-000000000001"
ID2 = "87654321-aaaa-bbbb-cccc-000000000002"
ID3 = "11112222-aaaa-bbbb-cccc-000000000003"

CONSUMERS: list[dict[str, Any]] = [
    {"name": "consumer1", "client_id": ID1, "client_secret": SECRET1},
    {"name": "consumer2", "client_id": ID2, "client_secret": SECRET2, "scopes": ["read", "write"]},
]
SECRETS = {ID1: SECRET1, ID2: SECRET2, ID3: SECRET3}
NAMES = {ID1: "consumer1", ID2: "consumer2", ID3: "consumer3"}


class FakeClock(Clock):
    """Wall and monotonic time that move only when a test moves them."""

    def __init__(self, now: float | None = None) -> None:
        # near real time, so PyJWT (which reads the real clock) accepts fresh tokens
        self.now = float(int(time.time())) if now is None else now
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@cache
def _pool() -> UpstreamPool:
    """The pool a test route points at: the plugins read only the route's name, nothing connects."""
    loop = asyncio.new_event_loop()
    loop.close()
    return UpstreamPool(Service(name="api", url="http://127.0.0.1:9"), loop)


class Ctx(RequestContext):
    """A request with a fixed body, on a route named `route`."""

    __slots__ = ("body", "body_reads")

    def __init__(
        self,
        method: str = "GET",
        path: str = "/api/items",
        query: str = "",
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        body: bytes = b"",
        route: str = "api",
        client_ip: str = "10.0.0.1",
    ) -> None:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
        super().__init__(
            method=method,
            path=path,
            query=query,
            host="example.com",
            headers=raw,
            lookup={k.lower(): v for k, v in raw},
            client_ip=client_ip,
            scheme="http",
            request_id="req-1",
            http_version="1.1",
        )
        self.body = body
        self.body_reads = 0
        self.route = RouteRuntime(route, _pool(), 0, False, None, Chain())

    async def read_body(self, limit: int) -> bytes:
        self.body_reads += 1
        if len(self.body) > limit:
            raise BodyTooLarge()
        return self.body


class DownStore:
    """A store that cannot be reached: every verb raises StoreUnavailable."""

    backend = "sqlite"

    def __getattr__(self, name: str) -> Any:
        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the store is down (test)")

        return unavailable


def make_plugin(store: Store | Any, clock: Clock, **fields: Any) -> OAuthPlugin:
    data: dict[str, Any] = {"consumers": CONSUMERS, **fields}
    if data["consumers"] is None:
        del data["consumers"]
    return OAuthPlugin(OAuthConfig.model_validate(data), PluginDeps(clock=clock, store=store))


def instance_step(plugin: OAuthPlugin) -> OAuthStep:
    step = plugin.bind(plugin.config)
    assert isinstance(step, OAuthStep)
    return step


def rule_step(plugin: OAuthPlugin, **rule: Any) -> OAuthStep:
    step = plugin.bind(OAuthRule.model_validate(rule))
    assert isinstance(step, OAuthStep)
    return step


def token_query(
    client_id: str = ID1, secret: str = SECRET1, grant: str = "client_credentials", **extra: str
) -> str:
    return urlencode(
        {"grant_type": grant, "client_id": client_id, "client_secret": secret, **extra}
    )


async def fetch_token(
    step: Step, client_id: str = ID1, secret: str = SECRET1, route: str = "api", **extra: str
) -> str:
    """A token from the step's endpoint (GET, Higress style)."""
    ctx = Ctx(path="/api/oauth2/token", query=token_query(client_id, secret, **extra), route=route)
    response = await step.on_request(ctx)
    assert response is not None and response.status == 200, response
    token = orjson.loads(response.body)["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str, name: str = "Authorization") -> dict[str, str]:
    return {name: f"Bearer {token}"}


def headers_of(response: Response) -> dict[str, str]:
    """Response headers by lower-case name (each name once in these responses)."""
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), f"repeated header in {response.headers}"
    return {name.decode().lower(): value.decode() for name, value in response.headers}


def claims(clock: Clock, client_id: str = ID1, **overrides: Any) -> dict[str, Any]:
    """The claims Bastion issues for `client_id` now; `overrides` with None drops a claim."""
    now = int(clock.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": NAMES[client_id],
        "aud": "default",
        "client_id": client_id,
        "iat": now,
        "exp": now + 7200,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forge(
    payload: Mapping[str, Any],
    secret: str | bytes | None = SECRET1,
    alg: str = "HS256",
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A token signed with PyJWT; `headers` default to the RFC 9068 typ."""
    header = {"typ": TYP} if headers is None else dict(headers)
    return jwt.encode(dict(payload), secret, algorithm=alg, headers=header)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_raw(
    header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, secret: str
) -> str:
    """A token whose header says what it likes, HMAC-SHA256-signed with `secret` (algorithm
    confusion: a header claiming HS512 or RS256 over an HS256 signature)."""
    head = header if isinstance(header, bytes) else orjson.dumps(dict(header))
    body = payload if isinstance(payload, bytes) else orjson.dumps(dict(payload))
    signing_input = f"{b64(head)}.{b64(body)}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


def decode(token: str, secret: str = SECRET1, audience: str = "default") -> dict[str, Any]:
    """Verify with PyJWT, an independent client, as an upstream would."""
    payload: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    return payload
