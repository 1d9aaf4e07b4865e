"""The `oauth` plugin end to end: every example of reference 000/001 through `bastion run`.

The docs' own consumers, secrets, hosts and curl requests; tokens checked with PyJWT (an
independent JOSE client) and minted with it to play a consumer that holds its own HS256 key.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from bastion.plugins.oauth.revocation import revoke
from bastion.store.sqlite import SqliteStore
from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import free_port, gateway_config, run_gateway

CID1 = "12345678-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
SECRET1 = "abcdefgh-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
CID2 = "87654321-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
SECRET2 = "hgfedcba-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
CONSUMER1 = {"name": "consumer1", "client_id": CID1, "client_secret": SECRET1}
CONSUMER2 = {"name": "consumer2", "client_id": CID2, "client_secret": SECRET2}
INVALID = b"Invalid Jwt token"
DENIED = b"Access Denied"
TOKEN_PATH = "/echo/a/oauth2/token"  # on route-a: the upstream would echo it if it were forwarded
# the sample token of reference 000/001: signed with SECRET1, expired since 2023
DOCS_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6ImFwcGxpY2F0aW9uXC9hdCtqd3QifQ.eyJhdWQiOiJkZWZhdWx0IiwiY2xpZW"
    "50X2lkIjoiMTIzNDU2NzgteHh4eC14eHh4LXh4eHgteHh4eHh4eHh4eHh4IiwiZXhwIjoxNjg3OTUxNDYzLCJpYXQi"
    "OjE2ODc5NDQyNjMsImlzcyI6IkhpZ3Jlc3MtR2F0ZXdheSIsImp0aSI6IjEwOTU5ZDFiLThkNjEtNGRlYy1iZWE3LT"
    "k0ODEwMzc1YjYzYyIsInN1YiI6ImNvbnN1bWVyMSJ9.NkT_rG3DcV9543vBQgneVqoGfIhVeOuUBwLJJ4Wycb0"
)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    upstream: dict[str, str] | None = field(default=None)  # headers the upstream echoed

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    port: int,
    path: str,
    host: str = "test.com",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Reply:
    """One request; `upstream` is set when the answer is the test upstream's echo."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        if response.status == 200 and data.startswith(b"{"):
            echoed = json.loads(data)
            if "headers" in echoed and "path" in echoed:
                reply.upstream = {k.lower(): v for k, v in echoed["headers"]}
        return reply
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_query(client_id: str = CID1, secret: str = SECRET1) -> str:
    return urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )


def get_token(
    port: int,
    path: str = TOKEN_PATH,
    host: str = "test.com",
    client_id: str = CID1,
    secret: str = SECRET1,
) -> str:
    """The docs' GET token request; asserts it succeeded and returns the access token."""
    reply = call(port, f"{path}?{token_query(client_id, secret)}", host)
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.upstream is None  # answered by the gateway, never forwarded
    token = reply.json()["access_token"]
    assert isinstance(token, str)
    return token


def mint(secret: str = SECRET1, typ: str = "application/at+jwt", **claims: Any) -> str:
    """A token made by a consumer holding its key (HS256 with its client_secret), as PyJWT
    makes it; `claims` override the Higress-shaped defaults (None removes one)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "aud": "default", "client_id": CID1, "exp": now + 7200, "iat": now,
        "iss": "Higress-Gateway", "jti": str(uuid.uuid4()), "sub": "consumer1",
    }  # fmt: skip
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm="HS256", headers={"typ": typ})


def routes() -> list[dict[str, object]]:
    """route-a, route-b and route-c at /echo/a, /echo/b, /echo/c; `rest` takes every other path."""
    return [
        {"name": "route-a", "path": "/echo/a", "service": "backend"},
        {"name": "route-b", "path": "/echo/b", "service": "backend"},
        {"name": "route-c", "path": "/echo/c", "service": "backend"},
        {"name": "rest", "path": "/", "service": "backend"},
    ]


def assert_unauthorized(reply: Reply) -> None:
    assert reply.status == 401, (reply.status, reply.body)
    assert reply.body.strip() == INVALID
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.upstream is None


def assert_denied(reply: Reply) -> None:
    assert reply.status == 403, (reply.status, reply.body)
    assert reply.body.strip() == DENIED
    assert "www-authenticate" not in reply.headers  # as Higress: a 403 has no challenge
    assert reply.upstream is None


def assert_passes_as(reply: Reply, consumer: str | None) -> None:
    """200 from the upstream, which saw X-Mse-Consumer: `consumer` (None: no such header)."""
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.upstream is not None
    assert reply.upstream.get("x-mse-consumer") == consumer


# --- reference example "Route-scoped tokens" (and "Shared tokens across routes") -------------


@pytest.mark.parametrize("placement", ["rules", "route-maps"])
@pytest.mark.parametrize("global_credentials", [False, None])
def test_route_scoped_tokens(
    start_gateway: GatewayFactory, placement: str, global_credentials: bool | None
) -> None:
    # the docs' config, applied to route-a and route-b
    config: dict[str, object] = {"consumers": [CONSUMER1]}
    if global_credentials is not None:
        config["global_credentials"] = global_credentials
    table = routes()
    if placement == "rules":
        plugins: dict[str, object] = {
            "oauth": {"_rules_": [{"_match_route_": ["route-a", "route-b"], **config}]}
        }
    else:
        plugins = {}
        for route in table[:2]:
            route["plugins"] = {"oauth": config}
    with start_gateway(routes=table, plugins=plugins) as gw:
        from_a = get_token(gw.port, "/echo/a/oauth2/token")
        from_b = get_token(gw.port, "/echo/b/oauth2/token", host="a.example.com")
        aud_a = jwt.decode(from_a, SECRET1, algorithms=["HS256"], options={"verify_aud": False})
        if global_credentials is False:
            # SPEC §4: scoped to the issuing route only when global_credentials is false
            assert aud_a["aud"] == "route-a"
            assert_passes_as(call(gw.port, "/echo/a/x", headers=bearer(from_a)), "consumer1")
            assert_denied(call(gw.port, "/echo/b/x", headers=bearer(from_a)))
            assert_passes_as(call(gw.port, "/echo/b/x", headers=bearer(from_b)), "consumer1")
            assert_denied(call(gw.port, "/echo/a/x", headers=bearer(from_b)))
            # a token minted for no route ("default") is no route's token either
            assert_denied(call(gw.port, "/echo/a/x", headers=bearer(mint())))
        else:
            # global_credentials defaults to true (field table, Higress's code): shared tokens
            assert aud_a["aud"] == "default"
            for token in (from_a, from_b):
                for path in ("/echo/a/x", "/echo/b/x"):
                    assert_passes_as(call(gw.port, path, headers=bearer(token)), "consumer1")
        # both routes need a token; the routes without the config need none
        assert_unauthorized(call(gw.port, "/echo/a/x"))
        assert_unauthorized(call(gw.port, "/echo/b/x"))
        assert_passes_as(call(gw.port, "/echo/c/x"), None)
        assert_passes_as(call(gw.port, "/echo/other"), None)
        # the token endpoint is only where the plugin applies: on route-c it is forwarded
        forwarded = call(gw.port, f"/echo/c/oauth2/token?{token_query()}")
        assert forwarded.upstream is not None


@pytest.mark.parametrize("level", ["routes", "instance"])
def test_shared_tokens_across_routes(start_gateway: GatewayFactory, level: str) -> None:
    config: dict[str, object] = {"global_credentials": True, "consumers": [CONSUMER1]}
    plugins: dict[str, object]
    if level == "routes":
        plugins = {"oauth": {"_rules_": [{"_match_route_": ["route-a", "route-b"], **config}]}}
    else:  # instance config without rules nor global_auth: every route
        plugins = {"oauth": config}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port, "/echo/b/oauth2/token", host="a.example.com")
        claims = jwt.decode(token, SECRET1, algorithms=["HS256"], audience="default")
        assert claims["sub"] == "consumer1"
        for path in ("/echo/a/1", "/echo/b/2"):
            assert_passes_as(call(gw.port, path, headers=bearer(token)), "consumer1")
            assert_unauthorized(call(gw.port, path))
        if level == "routes":
            assert_passes_as(call(gw.port, "/echo/c/3"), None)
        else:
            assert_passes_as(call(gw.port, "/echo/c/3", headers=bearer(token)), "consumer1")
            assert_unauthorized(call(gw.port, "/echo/c/3"))


# --- reference example "Instance-level consumers with route-level access control" -----------


def test_instance_consumers_with_route_and_domain_access_control(
    start_gateway: GatewayFactory,
) -> None:
    plugins = {
        "oauth": {
            "global_auth": False,
            "consumers": [CONSUMER1, CONSUMER2],
            "_rules_": [
                {"_match_route_": ["route-a", "route-b"], "allow": ["consumer1"]},
                {"_match_domain_": ["*.example.com", "test.com"], "allow": ["consumer2"]},
            ],
        }
    }
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        # either consumer gets a token wherever a rule applies (allow narrows access, not issue)
        one = get_token(gw.port, "/echo/a/oauth2/token", host="other.org")
        two = get_token(gw.port, "/echo/x/oauth2/token", "test.com", CID2, SECRET2)
        assert get_token(gw.port, "/echo/x/oauth2/token", "a.example.com", CID2, SECRET2)
        # route-a and route-b: consumer1 only, whatever the host (a route rule beats domains)
        for path, host in [("/echo/a/1", "other.org"), ("/echo/b/1", "test.com")]:
            assert_passes_as(call(gw.port, path, host, bearer(one)), "consumer1")
            assert_denied(call(gw.port, path, host, bearer(two)))
            assert_unauthorized(call(gw.port, path, host))
        # *.example.com (any depth) and test.com: consumer2 only
        for host in ["test.com", "a.example.com", "x.y.example.com", "TEST.com:8080"]:
            assert_passes_as(call(gw.port, "/echo/c/1", host, bearer(two)), "consumer2")
            assert_denied(call(gw.port, "/echo/c/1", host, bearer(one)))
            assert_unauthorized(call(gw.port, "/echo/other", host))
        # elsewhere (another host, the apex example.com) nothing applies: no token needed,
        # and the token endpoint is not there (the request goes upstream)
        for host in ["other.org", "example.com"]:
            assert_passes_as(call(gw.port, "/echo/c/1", host), None)
            assert_passes_as(
                call(gw.port, "/echo/c/1", host, {"X-Mse-Consumer": "consumer1"}), None
            )
            forwarded = call(gw.port, f"/echo/c/oauth2/token?{token_query()}", host)
            assert forwarded.upstream is not None


# --- reference example "Gateway-wide authentication" ----------------------------------------


def test_gateway_wide_authentication(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"global_auth": True, "consumers": [CONSUMER1, CONSUMER2]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        one = get_token(gw.port, "/echo/c/oauth2/token", host="other.org")
        two = get_token(gw.port, "/oauth2/token", host="test.com", client_id=CID2, secret=SECRET2)
        for path, host in [
            ("/echo/a/1", "test.com"),
            ("/echo/b/1", "a.example.com"),
            ("/echo/c/1", "other.org"),
            ("/echo/other", "example.com"),
        ]:
            reply = call(gw.port, path, host)
            assert_unauthorized(reply)
            assert 'error="' not in reply.headers["www-authenticate"]  # no token given
            bad = call(gw.port, path, host, {"Authorization": f"Basic {SECRET1}"})
            assert_unauthorized(bad)
            assert_passes_as(call(gw.port, path, host, bearer(one)), "consumer1")
            assert_passes_as(call(gw.port, path, host, bearer(two)), "consumer2")
        # health endpoints are answered before routing, without a token
        assert call(gw.port, "/healthz").status == 200


# --- the docs' curl token requests ------------------------------------------------------------


def check_token_response(reply: Reply, ttl: int = 7200) -> str:
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.upstream is None
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["pragma"] == "no-cache"
    payload = reply.json()
    assert payload["token_type"] == "bearer"
    assert payload["expires_in"] == ttl
    token = payload["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["typ"] == "application/at+jwt"
    claims = jwt.decode(
        token, SECRET1, algorithms=["HS256"], audience="default", issuer="Higress-Gateway"
    )
    assert claims["sub"] == "consumer1"
    assert claims["client_id"] == CID1
    assert claims["exp"] - claims["iat"] == ttl
    assert abs(claims["iat"] - time.time()) < 30
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    assert set(claims) == {"aud", "client_id", "exp", "iat", "iss", "jti", "sub"}
    return str(token)


def test_docs_token_requests_get_and_post(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        by_get = check_token_response(call(gw.port, f"{TOKEN_PATH}?{token_query()}"))
        by_post = check_token_response(
            call(
                gw.port,
                TOKEN_PATH,
                method="POST",
                headers={"content-type": "application/x-www-form-urlencoded"},
                body=token_query().encode(),
            )
        )
        assert by_get != by_post  # a fresh jti each time
        # the docs' literal target: auth_path at the root of the host
        check_token_response(call(gw.port, f"/oauth2/token?{token_query()}"))
        # other methods on the token path are refused, never forwarded unauthenticated
        put = call(gw.port, TOKEN_PATH, method="PUT", body=token_query().encode())
        assert put.status == 405
        assert put.upstream is None
        assert "GET" in put.headers.get("allow", "") and "POST" in put.headers["allow"]
        # refusals: Higress's 400 plain-text messages, in its order; nothing is forwarded
        for query, message in [
            ("", b"Authorize parameters are missing"),
            ("?client_id=x", b"grant_type is missing"),
            ("?grant_type=password&client_id=x", b"grant_type:password is not support"),
            ("?grant_type=client_credentials", b"client_id is missing"),
            (f"?grant_type=client_credentials&client_id={CID1}", b"client_secret is missing"),
            (f"?{token_query(client_id='nobody')}", b"invalid client_id or client_secret"),
            (f"?{token_query(secret=SECRET2)}", b"invalid client_id or client_secret"),
        ]:
            refused = call(gw.port, f"{TOKEN_PATH}{query}")
            assert (refused.status, refused.body.strip()) == (400, message), query
            assert refused.headers["cache-control"] == "no-store"
        bad_type = call(
            gw.port, TOKEN_PATH, method="POST", headers={"content-type": "text/plain"}, body=b"x"
        )
        assert (bad_type.status, bad_type.body.strip()) == (400, b"Invalid content-type")
        # Bastion's opt-ins: RFC 6749 errors when the client asks for JSON; HTTP Basic
        rfc = call(
            gw.port,
            f"{TOKEN_PATH}?{token_query(secret=SECRET2)}",
            headers={"Accept": "application/json"},
        )
        assert rfc.status == 401
        assert rfc.json()["error"] == "invalid_client"
        assert rfc.headers["www-authenticate"].startswith("Basic")
        basic = base64.b64encode(f"{CID1}:{SECRET1}".encode()).decode()
        check_token_response(
            call(
                gw.port,
                f"{TOKEN_PATH}?grant_type=client_credentials",
                headers={"Authorization": f"Basic {basic}"},
            )
        )
        # the issued tokens work
        for token in (by_get, by_post):
            assert_passes_as(call(gw.port, "/echo/b/x", headers=bearer(token)), "consumer1")


def test_token_ttl_is_the_configured_one(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1], "token_ttl": 600}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = check_token_response(call(gw.port, f"{TOKEN_PATH}?{token_query()}"), ttl=600)
        assert_passes_as(call(gw.port, "/echo/b/x", headers=bearer(token)), "consumer1")
        # a consumer-minted token for the default 7200 s lives longer than token_ttl here
        assert_unauthorized(call(gw.port, "/echo/b/x", headers=bearer(mint())))


# --- calling with the token: X-Mse-Consumer, keep_token, the auth header ----------------------


def test_call_with_token_sets_consumer_header_and_keeps_token(
    start_gateway: GatewayFactory,
) -> None:
    plugins = {
        "oauth": {
            "global_auth": False,
            "consumers": [CONSUMER1],
            "_rules_": [{"_match_route_": ["route-a", "route-b"]}],
        }
    }
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port)
        assert_unauthorized(call(gw.port, "/echo/a/x"))  # a rule without allow: everyone
        reply = call(gw.port, "/echo/a/x", headers=bearer(token))
        assert_passes_as(reply, "consumer1")
        assert reply.upstream is not None
        assert reply.upstream["authorization"] == f"Bearer {token}"  # keep_token: true
        forged = {**bearer(token), "X-Mse-Consumer": "admin", "X_Mse_Consumer": "root"}
        reply = call(gw.port, "/echo/b/x", headers=forged)
        assert_passes_as(reply, "consumer1")
        assert reply.upstream is not None
        assert "x_mse_consumer" not in reply.upstream
        # where the plugin does not run, a client's X-Mse-Consumer never reaches the upstream
        for path in ("/echo/c/x", "/echo/other"):
            reply = call(gw.port, path, headers={"X-Mse-Consumer": "admin"})
            assert_passes_as(reply, None)
            reply = call(gw.port, path, headers={"X_Mse_Consumer": "admin"})
            assert_passes_as(reply, None)
            assert reply.upstream is not None and "x_mse_consumer" not in reply.upstream


@pytest.mark.parametrize("level", ["instance", "rule"])
def test_keep_token_false_strips_the_token(start_gateway: GatewayFactory, level: str) -> None:
    if level == "instance":
        plugins: dict[str, object] = {"oauth": {"keep_token": False, "consumers": [CONSUMER1]}}
    else:  # a rule with a config of its own and no allow still authenticates (SPEC §4)
        plugins = {
            "oauth": {
                "global_auth": False,
                "consumers": [CONSUMER1],
                "_rules_": [{"_match_route_": ["route-a"], "keep_token": False}],
            }
        }
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port)
        reply = call(gw.port, "/echo/a/x", headers=bearer(token))
        assert_passes_as(reply, "consumer1")
        assert reply.upstream is not None and "authorization" not in reply.upstream
        assert_unauthorized(call(gw.port, "/echo/a/x"))
        if level == "rule":  # no rule on route-b: its Authorization passes untouched
            reply = call(gw.port, "/echo/b/x", headers=bearer(token))
            assert_passes_as(reply, None)
            assert reply.upstream is not None
            assert reply.upstream["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize("field_name", ["auth_header_name", "auth_header"])
@pytest.mark.parametrize("keep_token", [True, False])
def test_custom_auth_header(
    start_gateway: GatewayFactory, field_name: str, keep_token: bool
) -> None:
    plugins = {"oauth": {field_name: "X-Token", "keep_token": keep_token, "consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port)
        reply = call(gw.port, "/echo/a/x", headers={"X-Token": f"Bearer {token}"})
        assert_passes_as(reply, "consumer1")
        assert reply.upstream is not None
        assert ("x-token" in reply.upstream) is keep_token
        # the token in Authorization is not looked at
        assert_unauthorized(call(gw.port, "/echo/a/x", headers=bearer(token)))


# --- tokens that must be refused -------------------------------------------------------------


def test_refused_tokens(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1, CONSUMER2]}}
    now = int(time.time())
    with start_gateway(routes=routes(), plugins=plugins) as gw:

        def status(token: str) -> int:
            reply = call(gw.port, "/echo/a/x", headers=bearer(token))
            if reply.status == 401:
                assert_unauthorized(reply)
                assert 'error="invalid_token"' in reply.headers["www-authenticate"]
            return reply.status

        # a consumer holding its key mints a Higress-shaped token: accepted, as Higress does
        assert status(mint()) == 200
        assert status(mint(SECRET2, client_id=CID2, sub="consumer2")) == 200
        assert status(mint(exp=now - 30, iat=now - 7230)) == 200  # expired within the skew
        refused = {
            "garbage": "not-a-jwt",
            "two dots garbage": "a.b.c",
            "the docs' sample (expired 2023)": DOCS_TOKEN,
            "expired past the skew": mint(exp=now - 120, iat=now - 7320),
            "longer than token_ttl + skew": mint(exp=now + 7200 + 61 + 30),
            "issued in the future": mint(iat=now + 600, exp=now + 1200),
            "alg none": jwt.encode(
                jwt.decode(mint(), options={"verify_signature": False}),
                "",
                algorithm="none",
                headers={"typ": "application/at+jwt"},
            ),
            "another consumer's client_id, the wrong key": mint(
                SECRET1, client_id=CID2, sub="consumer2"
            ),
            "an unknown client_id": mint(client_id="nobody"),
            "sub is not the consumer": mint(sub="consumer2"),
            "another issuer": mint(iss="someone-else"),
            "typ JWT (not an access token)": mint(typ="JWT"),
            "no jti": mint(jti=None),
            "no exp": mint(exp=None),
            "signed with another secret": mint(SECRET2),
        }
        got = {name: status(token) for name, token in refused.items()}
        assert got == dict.fromkeys(refused, 401)


# --- lockout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lockout", [{"max_failures": 3, "window": 60}, None])
def test_lockout_after_failed_secrets(
    start_gateway: GatewayFactory, lockout: dict[str, int] | None
) -> None:
    config: dict[str, object] = {"consumers": [CONSUMER1, CONSUMER2]}
    if lockout is not None:
        config["lockout"] = lockout
    limit = lockout["max_failures"] if lockout else 10  # the default: 10 in 60 s
    with start_gateway(routes=routes(), plugins={"oauth": config}) as gw:
        for i in range(limit):
            wrong = call(gw.port, f"{TOKEN_PATH}?{token_query(secret=f'wrong-{i}')}")
            assert wrong.status in (400, 401), (i, wrong.status, wrong.body)
            if i == limit - 2:  # not locked yet: the right secret still works
                get_token(gw.port)
        locked = call(gw.port, f"{TOKEN_PATH}?{token_query()}")
        assert locked.status == 429, (locked.status, locked.body)
        assert 0 < int(locked.headers["retry-after"]) <= 60
        assert b"access_token" not in locked.body and locked.upstream is None
        # the POST form and the other consumer from the same address are locked too
        post = post_token(gw.port, token_query())
        assert post.status == 429 and "retry-after" in post.headers
        other = call(gw.port, f"{TOKEN_PATH}?{token_query(CID2, SECRET2)}")
        assert other.status == 429


# --- revocation through the store, seen by another gateway process ---------------------------


def revoke_in(db: Path, jti: str) -> None:
    async def run() -> None:
        store = SqliteStore(db)
        try:
            assert await revoke(store, [jti], ttl=7400) == 1
        finally:
            await store.aclose()

    asyncio.run(run())


def test_revocation_is_seen_by_every_gateway_sharing_the_store(
    tmp_path: Path, upstream_port: int
) -> None:
    db = tmp_path / "shared.db"
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    common = {"store": f"sqlite:///{db}", "routes": routes(), "plugins": plugins}
    config_one = gateway_config(upstream_port, free_port(), **common)
    config_two = gateway_config(upstream_port, free_port(), **common)
    with run_gateway(one_dir, config_one) as one, run_gateway(two_dir, config_two) as two:
        token = get_token(one.port)
        keep = get_token(two.port)
        for gw in (one, two):
            for _ in range(2):  # the second use answers from the verified-token cache
                assert_passes_as(call(gw.port, "/echo/a/x", headers=bearer(token)), "consumer1")
        jti = jwt.decode(token, SECRET1, algorithms=["HS256"], audience="default")["jti"]
        revoke_in(db, jti)
        pending = {one.port, two.port}
        deadline = time.monotonic() + 2.0
        while pending and time.monotonic() < deadline:
            for port in list(pending):
                if call(port, "/echo/a/x", headers=bearer(token)).status == 401:
                    pending.discard(port)
            time.sleep(0.05)
        assert not pending, f"still accepted after 2 s on ports {pending}"
        for gw in (one, two):
            assert_unauthorized(call(gw.port, "/echo/a/x", headers=bearer(token)))
            assert_passes_as(call(gw.port, "/echo/b/x", headers=bearer(keep)), "consumer1")


# --- the store down: fail closed -------------------------------------------------------------


def test_store_down_fails_closed(start_gateway: GatewayFactory) -> None:
    dead = free_port()  # nothing listens there
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins, store=f"redis://127.0.0.1:{dead}/0") as gw:
        reply = call(gw.port, f"{TOKEN_PATH}?{token_query()}")
        assert reply.status == 503, (reply.status, reply.body)
        assert reply.json() == {"error": "store_unavailable"}
        valid = mint()
        for path in ("/echo/a/x", "/echo/b/x"):
            reply = call(gw.port, path, headers=bearer(valid))
            assert reply.status == 503, (reply.status, reply.body)
            assert reply.json() == {"error": "store_unavailable"}
            assert reply.upstream is None
        deadline = time.monotonic() + 5
        ready = call(gw.port, "/readyz")
        while ready.status != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            ready = call(gw.port, "/readyz")
        assert ready.status == 503
        assert ready.json() == {"status": "store_unavailable"}
        assert call(gw.port, "/healthz").status == 200


# --- secrets and tokens never reach the access log -------------------------------------------


def post_token(port: int, form: str) -> Any:
    """A Higress-style POST token request (reference 000 "POST request")."""
    return call(
        port, TOKEN_PATH, method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"}, body=form.encode(),
    )  # fmt: skip


def test_access_log_has_no_secret_nor_token(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port)
        post = post_token(gw.port, token_query())
        posted = post.json()["access_token"]
        assert_passes_as(call(gw.port, "/echo/a/x", headers=bearer(token)), "consumer1")
        assert_unauthorized(call(gw.port, f"/echo/a/y?access_token={token}"))
        call(gw.port, f"/echo/a/oauth2/token?client_secret={SECRET1}&grant_type=x")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = gw.log_lines()
            access = [json.loads(x) for x in lines if '"type":"access"' in x]
            if len(access) >= 5:
                break
            time.sleep(0.05)
        assert len(access) >= 5, lines
        text = "\n".join(lines)
        for secret in (SECRET1, token, posted):
            assert secret not in text
        assert any("client_secret=REDACTED" in entry["uri"] for entry in access)


# --- found by these tests, fixed ----------------------------------------------------------------


def test_a_repeated_auth_header_never_smuggles_an_unverified_token_upstream(
    start_gateway: GatewayFactory,
) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        token = get_token(gw.port)
        forged = mint(SECRET2, sub="admin")  # not verifiable: an upstream must never see it
        for first, second in [(token, forged), (forged, token)]:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            try:
                conn.putrequest("GET", "/echo/a/x", skip_host=True)
                conn.putheader("Host", "test.com")
                conn.putheader("Authorization", f"Bearer {first}")
                conn.putheader("Authorization", f"Bearer {second}")
                conn.endheaders()
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
            if response.status == 200:
                values = [v for k, v in json.loads(body)["headers"] if k.lower() == "authorization"]
                assert values == [f"Bearer {token}"], values
            else:
                assert response.status in (400, 401), (response.status, body)


def test_a_token_not_valid_before_a_future_nbf_is_refused(start_gateway: GatewayFactory) -> None:
    plugins = {"oauth": {"consumers": [CONSUMER1]}}
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        early = mint(nbf=int(time.time()) + 3600)
        with pytest.raises(jwt.ImmatureSignatureError):
            jwt.decode(early, SECRET1, algorithms=["HS256"], audience="default")
        assert_unauthorized(call(gw.port, "/echo/a/x", headers=bearer(early)))
