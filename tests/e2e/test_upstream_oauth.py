"""Issue 6 end to end: the `upstream-oauth` plugin in real `bastion run` processes.

Every test runs a real gateway in front of the real upstream (tests/e2e/upstream_app.py, whose
`/echo...` paths answer with the headers they received) and a real IdP: the Python test IdP
(tests/e2e/idp_app.py: counts, delays, failures, every client auth method), the npm
`oidc-provider` (an independent OpenID provider), real redis-server processes for the `redis`
strategy. Routes are told apart by their `Host` (`<route>.test`), and most routes ask for scopes
of their own, so the IdP's record of each token request (its `scope` form field) says which route
asked.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tests.e2e.conftest import GatewayFactory
from tests.e2e.idp import (
    ASSERTION_TYPE,
    DEFAULT_CLIENTS,
    Idp,
    generate_key,
    post_form,
    start_tls_idp,
)
from tests.e2e.oidc_provider import OidcProvider
from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway, stop
from tests.e2e.test_ops import AUTH, Reply, admin, eventually, fetch, json_lines, metric, scrape
from tests.e2e.test_workers import listening_workers
from tests.store import redis_servers

LOG_MESSAGE = "upstream-oauth: no token from the IdP"
DEFAULT_ERROR = {"code": "502", "message": "Failed to authenticate request to upstream"}
JSON_TYPE = "application/json; charset=utf-8"
FAIL_CLIENT = "fail-client"
FAIL_SECRET = "FAILSECRET-d41d8cd98f00b204"  # must never show in the gateway's log
TOKEN_RE = r"^Bearer tok-\d+-[0-9a-f]{16}$"
ADMIN_JSON = {**AUTH, "Content-Type": "application/json"}


# --- config -------------------------------------------------------------------------------------


def oauth(
    idp: Idp | str,
    client_id: str = "post-client",
    client_secret: str | None = "post-secret",
    **fields: Any,
) -> dict[str, Any]:
    """An `oauth` group for `idp` (or a token endpoint URL)."""
    endpoint = idp if isinstance(idp, str) else idp.token_endpoint
    group: dict[str, Any] = {"token_endpoint": endpoint, "client_id": client_id}
    if client_secret is not None:
        group["client_secret"] = client_secret
    return {**group, **fields}


def host_route(name: str) -> dict[str, Any]:
    return {"name": name, "domains": [f"{name}.test"], "path": "/", "service": "backend"}


def setup(instance: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`routes` and `plugins` overrides: one route per rule (selected by `Host: <name>.test`),
    each with its own upstream-oauth config, plus the catch-all route `all` that the instance
    config serves."""
    routes = [host_route(name) for name in rules]
    routes.append({"name": "all", "path": "/", "service": "backend"})
    section = {**instance}
    if rules:
        section["_rules_"] = [{"_match_route_": [name], **rule} for name, rule in rules.items()]
    return {"routes": routes, "plugins": {"upstream-oauth": section}}


# --- requests -----------------------------------------------------------------------------------


def call(
    gw: Gateway,
    route: str | None,
    path: str = "/echo/uo",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 15,
) -> Reply:
    """One request on a new connection, to `route` (by Host) or to the catch-all (None)."""
    sent = dict(headers or {})
    if route is not None:
        sent["Host"] = f"{route}.test"
    return fetch(gw.url, path, method=method, headers=sent, body=body, timeout=timeout)


def received(reply: Reply, name: str) -> list[str]:
    """The values of header `name` that the upstream received (from its echo)."""
    assert reply.status == 200, (reply.status, reply.body[:300])
    return [v for k, v in reply.json()["headers"] if k.lower() == name.lower()]


def token_of(reply: Reply, header: str = "Authorization") -> str:
    """The one value of `header` the upstream received."""
    values = received(reply, header)
    assert len(values) == 1, values
    return values[0]


def route_token(gw: Gateway, route: str | None, header: str = "Authorization") -> str:
    return token_of(call(gw, route), header)


def concurrently(count: int, job: Any) -> list[Any]:
    """`job(i)` for i in range(count), all at once (bounded: one thread each, count <= 32)."""
    assert count <= 32
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(job, range(count)))


# --- the IdP's records --------------------------------------------------------------------------


def records(idp: Idp, scope: str | None = None) -> list[dict[str, Any]]:
    """The IdP's recorded token requests, those asking for `scope` when given."""
    found: list[dict[str, Any]] = idp.stats()["requests"]
    return [r for r in found if scope is None or r["form"].get("scope") == scope]


def asked(idp: Idp, scope: str) -> int:
    return len(records(idp, scope))


def stays(check: Any, seconds: float = 0.5) -> None:
    """`check` holds now and still holds `seconds` later (nothing more arrives late)."""
    check()
    time.sleep(seconds)
    check()


def sleep_until(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)


def log_records(gw: Gateway, msg: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(gw) if line.get("msg") == msg]


# --- processes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[redis_servers.RedisProcess]:
    group, server = redis_servers.standalone()
    try:
        yield server
    finally:
        group.stop()


def bastion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def with_gateway(
    tmp_path: Path, upstream_port: int, name: str, *args: str, **overrides: Any
) -> contextlib.AbstractContextManager[Gateway]:
    """A gateway in a folder of its own (for several gateways in one test)."""
    folder = tmp_path / name
    folder.mkdir()
    return run_gateway(folder, gateway_config(upstream_port, free_port(), **overrides), *args)


# === 1. the token upstream =======================================================================


def raw_request(gw: Gateway, path: str, headers: list[tuple[str, str]]) -> Reply:
    """A GET with headers given as a list (a name may repeat)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def test_token_goes_upstream_in_the_configured_header(
    start_gateway: GatewayFactory, idp: Idp
) -> None:
    idp.control(token_type="bearer")  # the IdP's casing is kept
    rules = {
        "custom": {
            "oauth": oauth(idp, scopes=["custom"]),
            "behavior": {"upstream_access_token_header_name": "X-Upstream-Token"},
        },
        "notype": {"oauth": oauth(idp, scopes=["notype"])},
    }
    with start_gateway(**setup({"oauth": oauth(idp)}, rules)) as gw:
        # Authorization (the default) replaces what the client sent
        reply = call(gw, None, headers={"Authorization": "Bearer the-client-own-token"})
        sent = token_of(reply)
        assert sent.startswith("bearer tok-"), sent
        assert records(idp)[-1]["form"]["scope"] == "openid"
        # the token is the one the IdP issued: a second request reuses it
        assert route_token(gw, None) == sent

        # a custom header: set (replacing every copy the client sent); Authorization untouched
        reply = raw_request(
            gw,
            "/echo/custom",
            [
                ("Host", "custom.test"),
                ("X-Upstream-Token", "forged-1"),
                ("x-upstream-token", "forged-2"),
                ("Authorization", "Basic Y2xpZW50OnNlY3JldA=="),
            ],
        )
        custom = received(reply, "X-Upstream-Token")
        assert len(custom) == 1 and custom[0].startswith("bearer tok-"), custom
        assert custom[0] != sent  # other scopes: a token of its own
        assert received(reply, "Authorization") == ["Basic Y2xpZW50OnNlY3JldA=="]

        # no token_type from the IdP: Bearer
        idp.control(token_type=None)
        assert route_token(gw, "notype").startswith("Bearer tok-")
        assert asked(idp, "notype") == 1


# === 2. client authentication and grants against the Python IdP ==================================


def test_client_auth_methods_and_grants_reach_the_idp(
    start_gateway: GatewayFactory, idp: Idp, tmp_path: Path
) -> None:
    rsa, ec, ed = generate_key("RS256"), generate_key("ES256"), generate_key("EdDSA")
    idp.control(
        clients={
            "pk-rsa": {"public_jwk": rsa.public_jwk, "auth_method": "private_key_jwt"},
            "pk-ec": {"public_jwk": ec.public_jwk, "auth_method": "private_key_jwt"},
            "pk-ed": {"public_jwk": ed.public_jwk, "auth_method": "private_key_jwt"},
        }
    )
    ec_file = tmp_path / "pk-ec.pem"
    ec_file.write_text(ec.private_pem)
    ec_file.chmod(0o600)
    basic_secret = DEFAULT_CLIENTS["basic-client"]["secret"]
    jwt_secret = DEFAULT_CLIENTS["jwt-client"]["secret"]
    rules: dict[str, dict[str, Any]] = {
        "post": {"oauth": oauth(idp, scopes=["post"])},
        "basic": {
            "oauth": oauth(idp, "basic-client", basic_secret, scopes=["basic"]),
            "client": {"auth_method": "client_secret_basic"},
        },
        "jwt512": {
            "oauth": oauth(idp, "jwt-client", jwt_secret, scopes=["jwt512"]),
            "client": {"auth_method": "client_secret_jwt"},
        },
        "jwt256": {
            "oauth": oauth(idp, "jwt-client", jwt_secret, scopes=["jwt256"]),
            "client": {"auth_method": "client_secret_jwt", "client_secret_jwt_alg": "HS256"},
        },
        "pkrsa": {
            "oauth": oauth(idp, "pk-rsa", None, scopes=["pkrsa"]),
            "client": {
                "auth_method": "private_key_jwt",
                "private_key": rsa.private_pem,
                "kid": rsa.kid,
            },
        },
        "pkec": {
            "oauth": oauth(idp, "pk-ec", None, scopes=["pkec"]),
            "client": {
                "auth_method": "private_key_jwt",
                "private_key": f"@{ec_file}",
                "kid": ec.kid,
                "private_key_jwt_alg": "ES256",
            },
        },
        "pked": {
            "oauth": oauth(idp, "pk-ed", None, scopes=["pked"]),
            "client": {
                "auth_method": "private_key_jwt",
                "private_key": ed.private_pem,
                "private_key_jwt_alg": "EdDSA",
            },
        },
        "none": {
            "oauth": oauth(idp, "public-client", None, scopes=["none"]),
            "client": {"auth_method": "none"},
        },
        "password": {
            "oauth": oauth(
                idp,
                grant_type="password",
                username="alice",
                password="alice-password",
                scopes=["password"],
            ),
        },
        "extras": {
            "oauth": oauth(
                idp,
                scopes=["b:write", "a:read"],
                audience=["https://api-1.example", "https://api-2.example"],
                token_post_args={
                    "resource": "https://api.example/",
                    "grant_type": "authorization_code",  # the standard fields win
                    "scope": "forged",
                    "client_id": "forged",
                },
                token_headers={"X-Tenant": "tenant-42"},
            ),
        },
        "noscope": {
            "oauth": oauth(idp, "basic-client", basic_secret, scopes=[]),
            "client": {"auth_method": "client_secret_basic"},
        },
    }
    seen: dict[str, dict[str, Any]] = {}
    tokens: dict[str, str] = {}
    with start_gateway(**setup({"oauth": oauth(idp)}, rules)) as gw:
        for name in rules:
            tokens[name] = route_token(gw, name)
            last = records(idp)[-1]
            assert last["status"] == 200, (name, last)
            seen[name] = last
        # each route once, and each a token of its own (all the oauth settings differ)
        assert idp.stats()["token_requests"] == len(rules)
        assert len(set(tokens.values())) == len(rules)
        for name, value in tokens.items():
            assert value.startswith("Bearer tok-"), (name, value)

    def form(name: str) -> dict[str, str]:
        return seen[name]["form"]

    # client_secret_post (the default)
    assert seen["post"]["auth_method"] == "client_secret_post"
    assert form("post") == {
        "grant_type": "client_credentials",
        "scope": "post",
        "client_id": "post-client",
        "client_secret": "post-secret",
    }
    assert "authorization" not in seen["post"]["headers"]
    assert seen["post"]["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    # client_secret_basic: id and secret form-encoded first (RFC 6749 §2.3.1), none in the form
    assert seen["basic"]["auth_method"] == "client_secret_basic"
    pair = f"basic-client:{urllib.parse.quote_plus(basic_secret)}"
    assert seen["basic"]["headers"]["authorization"] == (
        "Basic " + base64.b64encode(pair.encode()).decode()
    )
    assert form("basic") == {"grant_type": "client_credentials", "scope": "basic"}
    # client_secret_jwt: HS512 by default, HS256 when asked; RFC 7523 claims
    for name, alg in (("jwt512", "HS512"), ("jwt256", "HS256")):
        assert seen[name]["auth_method"] == "client_secret_jwt"
        assert form(name)["client_assertion_type"] == ASSERTION_TYPE
        assert "client_secret" not in form(name)
        assertion = form(name)["client_assertion"]
        assert jwt.get_unverified_header(assertion)["alg"] == alg
        claims = jwt.decode(
            assertion,
            jwt_secret,
            algorithms=[alg],
            audience=idp.token_endpoint,
            issuer="jwt-client",
        )
        assert claims["sub"] == "jwt-client"
        assert claims["jti"]
        assert 0 < claims["exp"] - claims["iat"] <= 60
    # private_key_jwt: PEM text or @file, the kid in the header, the configured alg
    for name, key, alg in (("pkrsa", rsa, "RS256"), ("pkec", ec, "ES256"), ("pked", ed, "EdDSA")):
        assert seen[name]["auth_method"] == "private_key_jwt", seen[name]
        header = jwt.get_unverified_header(form(name)["client_assertion"])
        assert header["alg"] == alg
        if name != "pked":
            assert header["kid"] == key.kid
        else:
            assert "kid" not in header  # no client.kid configured
        assert "client_secret" not in form(name)
    # none: the client id alone
    assert seen["none"]["auth_method"] == "none"
    assert form("none") == {
        "grant_type": "client_credentials",
        "scope": "none",
        "client_id": "public-client",
    }
    # the password grant
    assert form("password")["grant_type"] == "password"
    assert (form("password")["username"], form("password")["password"]) == (
        "alice",
        "alice-password",
    )
    # scopes and audience space-joined, extra post args under the standard fields, headers
    extras = form("extras")
    assert extras["scope"] == "b:write a:read"
    assert extras["audience"] == "https://api-1.example https://api-2.example"
    assert extras["resource"] == "https://api.example/"
    assert extras["grant_type"] == "client_credentials"
    assert extras["client_id"] == "post-client"
    assert seen["extras"]["headers"]["x-tenant"] == "tenant-42"
    # scopes: [] sends no scope
    assert "scope" not in form("noscope")


# === 3. the real oidc-provider ===================================================================


def introspect(provider: OidcProvider, token: str) -> dict[str, Any]:
    post = provider.clients["client_secret_post"]
    answer = post_form(
        provider.introspection_endpoint,
        {"token": token, "client_id": post.client_id, "client_secret": post.secret or ""},
    )
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


def test_client_credentials_against_oidc_provider(
    start_gateway: GatewayFactory, oidc_provider: OidcProvider
) -> None:
    clients = oidc_provider.clients
    endpoint = oidc_provider.token_endpoint

    def settings(name: str, scopes: list[str], **client: Any) -> dict[str, Any]:
        c = clients[name]
        method = c.auth_method
        group = {"oauth": oauth(endpoint, c.client_id, c.secret, scopes=scopes)}
        if c.key is not None:
            client = {
                "private_key": c.key.private_pem,
                "kid": c.key.kid,
                "private_key_jwt_alg": c.key.alg,
                **client,
            }
        return {**group, "client": {"auth_method": method, **client}}

    rules = {
        "post": settings("client_secret_post", ["openid"]),
        "basic": settings("client_secret_basic", ["openid", "api:read"]),
        "jwt256": settings("client_secret_jwt", ["openid"], client_secret_jwt_alg="HS256"),
        "jwt512": settings("client_secret_jwt", ["api:read"]),  # HS512 by default
        "rs256": settings("private_key_jwt", ["openid", "api:read"]),
        "es256": settings("private_key_jwt_es256", ["api:read"]),
        "none": settings("none", ["openid"]),
    }
    owners = {
        "post": "cc-post",
        "basic": "cc-basic",
        "jwt256": "cc-secret-jwt",
        "jwt512": "cc-secret-jwt",
        "rs256": "cc-private-key-jwt",
        "es256": "cc-private-key-jwt-es256",
        "none": "cc-public",
    }
    with start_gateway(**setup(rules["post"], rules)) as gw:
        tokens = {}
        for name, rule in rules.items():
            value = route_token(gw, name)
            token_type, _, token = value.partition(" ")
            assert token_type == "Bearer" and token, (name, value)
            tokens[name] = token
            # the provider itself says the token the upstream received is live and whose it is
            facts = introspect(oidc_provider, token)
            assert facts["active"] is True, (name, facts, oidc_provider.log()[-2000:])
            assert facts["client_id"] == owners[name]
            assert facts["scope"] == " ".join(rule["oauth"]["scopes"])
            assert route_token(gw, name) == value  # cached
        assert len(set(tokens.values())) == len(rules)


# === 4. the cache: sharing, TTL, default_ttl, metrics ============================================


def test_cache_shares_by_oauth_settings_with_ttl_and_metrics(
    start_gateway: GatewayFactory, idp: Idp
) -> None:
    rules = {
        "a1": {"oauth": oauth(idp, scopes=["shared"])},
        "a2": {  # the same oauth settings, another header: one token
            "oauth": oauth(idp, scopes=["shared"]),
            "behavior": {"upstream_access_token_header_name": "X-Token"},
        },
        "c1": {"oauth": oauth(idp, scopes=["x", "y"])},
        "c2": {"oauth": oauth(idp, scopes=["y", "x"])},  # reordered: the same key
        "d": {"oauth": oauth(idp, scopes=["shared"], audience=["other"])},  # differs
        "ttl": {"oauth": oauth(idp, scopes=["ttl"]), "cache": {"eagerly_expire": 1}},
        "dttl": {"oauth": oauth(idp, scopes=["dttl"]), "cache": {"default_ttl": 2}},
    }
    with start_gateway(admin=admin(), **setup({"oauth": oauth(idp)}, rules)) as gw:
        a = {route_token(gw, "a1") for _ in range(10)}
        a |= {route_token(gw, "a2", "X-Token") for _ in range(10)}
        assert len(a) == 1
        assert asked(idp, "shared") == 1
        c = {route_token(gw, "c1"), route_token(gw, "c2")}
        assert len(c) == 1
        assert asked(idp, "x y") == 1 and asked(idp, "y x") == 0
        assert route_token(gw, "d") not in a | c
        assert idp.stats()["token_requests"] == 3

        text = scrape(gw)
        cache = "bastion_upstream_token_cache_total"
        assert metric(text, cache, result="miss") == 3
        assert metric(text, cache, result="hit") == 20
        assert metric(text, "bastion_idp_requests_total", outcome="ok") == 3
        assert metric(text, "bastion_idp_request_duration_seconds_count") == 3
        assert (metric(text, "bastion_idp_request_duration_seconds_sum") or 0) > 0
        assert "# TYPE bastion_idp_request_duration_seconds histogram" in text
        assert metric(text, "bastion_idp_request_duration_seconds_bucket", le="+Inf") == 3

        # TTL = expires_in - eagerly_expire = 3 - 1 = 2 s; default_ttl 2 s without expires_in.
        # Requests go only at t+1.0 (before the renewal ahead at 3/4 of the TTL, 1.5 s) and at
        # t+2.2 (past the TTL, before expires_in): the second must be a miss with a new token.
        idp.control(expires_in=3)
        start = time.monotonic()
        ttl1 = route_token(gw, "ttl")
        idp.control(expires_in=None)
        dttl1 = route_token(gw, "dttl")
        sleep_until(start + 1.0)
        assert route_token(gw, "ttl") == ttl1
        assert route_token(gw, "dttl") == dttl1
        assert (asked(idp, "ttl"), asked(idp, "dttl")) == (1, 1)
        sleep_until(start + 2.25)
        ttl2, dttl2 = route_token(gw, "ttl"), route_token(gw, "dttl")
        late = time.monotonic() - start
        assert ttl2 != ttl1 and dttl2 != dttl1
        assert (asked(idp, "ttl"), asked(idp, "dttl")) == (2, 2)
        assert late < 2.9, f"too slow to tell the TTL from expires_in ({late:.2f} s)"
        text = scrape(gw)
        assert metric(text, cache, result="miss") == 3 + 4
        assert metric(text, "bastion_idp_requests_total", outcome="ok") == 3 + 4


def test_expires_in_zero_is_not_default_ttl(start_gateway: GatewayFactory, idp: Idp) -> None:
    idp.control(expires_in=0)
    with start_gateway(plugins={"upstream-oauth": {"oauth": oauth(idp)}}) as gw:
        first = route_token(gw, None)
        time.sleep(1.2)  # the documented floor of a token's life is 1 s
        assert route_token(gw, None) != first
        assert idp.stats()["token_requests"] == 2


# === 5. single-flight, on one node and across nodes ==============================================


def test_single_flight_on_one_node(start_gateway: GatewayFactory, idp: Idp) -> None:
    idp.control(delay=1.0)
    with start_gateway(plugins={"upstream-oauth": {"oauth": oauth(idp)}}) as gw:
        replies = concurrently(20, lambda i: call(gw, None, f"/echo/sf{i}"))
        assert [r.status for r in replies] == [200] * 20
        assert len({token_of(r) for r in replies}) == 1
        stays(lambda: _count_is(idp, 1), 0.3)


def _count_is(idp: Idp, n: int) -> None:
    count = idp.stats()["token_requests"]
    assert count == n, count


def test_single_flight_across_nodes_on_redis(tmp_path: Path, upstream_port: int, idp: Idp) -> None:
    idp.control(delay=1.0)
    with redis_server() as redis:
        store = f"redis://127.0.0.1:{redis.port}/0"
        plugin = {"oauth": oauth(idp), "cache": {"strategy": "redis"}}
        overrides = {"store": store, "plugins": {"upstream-oauth": plugin}}
        with (
            with_gateway(tmp_path, upstream_port, "n1", **overrides) as one,
            with_gateway(tmp_path, upstream_port, "n2", **overrides) as two,
        ):
            nodes = [one, two]
            replies = concurrently(20, lambda i: call(nodes[i % 2], None, f"/echo/n{i}"))
            assert [r.status for r in replies] == [200] * 20
            assert len({token_of(r) for r in replies}) == 1
            stays(lambda: _count_is(idp, 1), 0.3)
            # an upstream 401: the token is deleted from Redis before the retry reads it, so
            # the retry carries a token fresh from the IdP
            idp.control(delay=0)
            assert call(one, None, "/status/401").status == 401
            stays(lambda: _count_is(idp, 2), 0.3)


def test_upstream_401_purge_reaches_the_other_nodes(
    tmp_path: Path, upstream_port: int, idp: Idp
) -> None:
    with redis_server() as redis:
        plugin = {"oauth": oauth(idp), "cache": {"strategy": "redis"}}
        store = f"redis://127.0.0.1:{redis.port}/0"
        overrides = {"store": store, "plugins": {"upstream-oauth": plugin}}
        with (
            with_gateway(tmp_path, upstream_port, "n1", **overrides) as one,
            with_gateway(tmp_path, upstream_port, "n2", **overrides) as two,
        ):
            rejected = route_token(one, None)
            assert route_token(two, None) == rejected  # one token for both nodes
            assert call(one, None, "/status/401").status == 401

            def dropped() -> None:  # within the second an operator purge takes
                assert route_token(two, None) != rejected

            eventually(dropped, timeout=2.5, interval=0.1)


# === 6. renewed ahead of expiry ==================================================================


def test_refresh_ahead_does_not_make_clients_wait(start_gateway: GatewayFactory, idp: Idp) -> None:
    idp.control(expires_in=4)
    plugin = {"oauth": oauth(idp), "cache": {"eagerly_expire": 0}}  # TTL 4 s, renewed from 3 s
    with start_gateway(plugins={"upstream-oauth": plugin}) as gw:
        start = time.monotonic()
        first = route_token(gw, None)
        sleep_until(start + 3.15)
        idp.control(delay=1.5)
        began = time.monotonic()
        reply = call(gw, None)
        took = time.monotonic() - began
        assert token_of(reply) == first  # answered with the current token...
        assert took < 1.0, f"the request waited {took:.2f} s on the renewal"
        # ...while the renewal runs in the background
        eventually(lambda: _count_is(idp, 2), timeout=3, interval=0.05)

        def renewed() -> None:
            assert route_token(gw, None) != first

        eventually(renewed, timeout=5, interval=0.1)
        idp.control(delay=0)
        later = {route_token(gw, None) for _ in range(5)}
        assert first not in later and len(later) == 1
        assert idp.stats()["token_requests"] == 2


# === 7. IdP failures =============================================================================


def test_idp_failures_answer_the_configured_error(
    start_gateway: GatewayFactory, idp: Idp, tmp_path: Path
) -> None:
    fail_client = {FAIL_CLIENT: {"secret": FAIL_SECRET, "auth_method": "client_secret_post"}}
    idp.control(clients=fail_client)
    dead = f"http://127.0.0.1:{free_port()}/token"  # nothing listens there

    def failing(scope: str, endpoint: Idp | str = idp, **groups: Any) -> dict[str, Any]:
        return {"oauth": oauth(endpoint, FAIL_CLIENT, FAIL_SECRET, scopes=[scope]), **groups}

    custom = {
        "idp_error_response_status_code": 503,
        "idp_error_response_content_type": "application/problem+json",
        "idp_error_response_message": 'The IdP is "down"',
        "idp_error_response_body_template": (
            '{"type": "idp", "status": {{status}}, "detail": "{{message}}", "again": "{{status}}"}'
        ),
    }
    with start_tls_idp(tmp_path) as (tls_idp, ca_file):
        tls_idp.control(clients=fail_client)
        rules = {
            "dead": failing("dead", dead),
            "custom": failing("custom", dead, behavior=custom),
            "slow": failing("slow", client={"timeout": 300}),
            "closed": failing("closed"),
            "s500": failing("s500"),
            "s401": failing("s401"),
            "notjson": failing("notjson"),
            "notoken": failing("notoken"),
            "untrusted": failing("untrusted", tls_idp),
            "trusted": failing("trusted", tls_idp, client={"ssl_ca_file": str(ca_file)}),
            "noverify": failing("noverify", tls_idp, client={"ssl_verify": False}),
        }
        instance = {"oauth": oauth(idp, FAIL_CLIENT, FAIL_SECRET, scopes=["fine"])}
        with start_gateway(admin=admin(), **setup(instance, rules)) as gw:
            fine = route_token(gw, None)  # the other routes keep their token and keep serving

            def is_default_error(route: str) -> None:
                reply = call(gw, route)
                assert reply.status == 502, (route, reply.status, reply.body)
                assert reply.headers["content-type"] == JSON_TYPE
                assert reply.json() == DEFAULT_ERROR, route
                assert route_token(gw, None) == fine

            is_default_error("dead")
            # a custom status, content type, message and template
            reply = call(gw, "custom")
            assert reply.status == 503
            assert reply.headers["content-type"] == "application/problem+json"
            assert reply.json() == {
                "type": "idp",
                "status": 503,
                "detail": 'The IdP is "down"',
                "again": "503",
            }
            # slow past client.timeout (300 ms): the error comes at the timeout, not the IdP's
            idp.control(delay=1.5)
            with ThreadPoolExecutor(1) as pool:
                began = time.monotonic()
                slow = pool.submit(call, gw, "slow")
                assert route_token(gw, None) == fine  # served meanwhile
                reply = slow.result(timeout=15)
                took = time.monotonic() - began
            assert (reply.status, reply.json()) == (502, DEFAULT_ERROR)
            assert took < 1.4, took
            idp.control(delay=0)
            for route, fail in (
                ("closed", "close"),
                ("s500", "status:500"),
                ("s401", "status:401"),
                ("notjson", "not_json"),
                ("notoken", "no_token"),
            ):
                idp.control(fail=fail)
                is_default_error(route)
                idp.control(fail=None)
            # TLS: the certificate is checked by default; trusted through ssl_ca_file, or unchecked
            is_default_error("untrusted")
            assert route_token(gw, "trusted").startswith("Bearer tok-")
            assert route_token(gw, "noverify").startswith("Bearer tok-")
            assert [r["form"]["scope"] for r in records(tls_idp)] == ["trusted", "noverify"]
            # nothing went upstream for a failing route; its next request tries the IdP again
            assert asked(idp, "s500") == 1
            assert route_token(gw, "s500").startswith("Bearer tok-")
            assert asked(idp, "s500") == 2

            text = scrape(gw)
            outcomes = {
                kind: metric(text, "bastion_idp_requests_total", outcome=kind)
                for kind in ("network", "timeout", "tls", "status", "not_json", "no_token")
            }
            assert outcomes == {
                "network": 3,
                "timeout": 1,
                "tls": 1,
                "status": 2,
                "not_json": 1,
                "no_token": 1,
            }
            assert stop(gw.proc) == 0

    lines = log_records(gw, LOG_MESSAGE)
    kinds = [line.get("kind") for line in lines]
    assert sorted(kinds) == sorted(
        [
            "network",
            "network",
            "network",
            "timeout",
            "status",
            "status",
            "not_json",
            "no_token",
            "tls",
        ]
    ), kinds
    assert all(line.get("level") == "error" and line.get("request_id") for line in lines)
    by_status = {line.get("status"): line for line in lines if line.get("kind") == "status"}
    assert set(by_status) == {500, 401}
    assert "failure 500 set by /control" in str(by_status[500].get("detail"))
    log = gw.log_path.read_text(errors="replace")
    assert FAIL_SECRET not in log
    assert "tok-" not in log  # no token the IdP issued, to any route
    assert fine.split()[1] not in log


def test_token_unfit_for_a_header_is_an_idp_error(start_gateway: GatewayFactory, idp: Idp) -> None:
    # a token_type with CR LF (header injection upstream) or outside Latin-1 cannot be sent
    rules = {
        "crlf": {"oauth": oauth(idp, scopes=["crlf"])},
        "utf8": {"oauth": oauth(idp, scopes=["utf8"])},
    }
    with start_gateway(**setup({"oauth": oauth(idp)}, rules)) as gw:
        for route, token_type in (
            ("crlf", "Bearer\r\nX-Injected: 1"),
            ("utf8", "Bear\u00e9r\u2713"),
        ):
            idp.control(token_type=token_type)
            reply = call(gw, route)
            assert reply.status == 502, (route, reply.status, reply.body)
            assert reply.json() == DEFAULT_ERROR
        idp.control(token_type="Bearer")
        assert route_token(gw, "crlf").startswith("Bearer tok-")  # nothing bad was cached
        assert stop(gw.proc) == 0
    kinds = [line.get("kind") for line in log_records(gw, LOG_MESSAGE)]
    assert kinds == ["no_token", "no_token"], kinds


# === 8. purge on an upstream status ==============================================================


def test_purge_on_upstream_status_and_one_retry(start_gateway: GatewayFactory, idp: Idp) -> None:
    rules = {
        "p": {"oauth": oauth(idp, scopes=["p"])},
        "np": {
            "oauth": oauth(idp, scopes=["np"]),
            "behavior": {"purge_token_on_upstream_status_codes": []},
        },
        "p403": {
            "oauth": oauth(idp, scopes=["p403"]),
            "behavior": {"purge_token_on_upstream_status_codes": [403, 401]},
        },
        "body": {"oauth": oauth(idp, scopes=["body"])},
        "empty": {"oauth": oauth(idp, scopes=["empty"])},
    }
    with start_gateway(admin=admin(), **setup({"oauth": oauth(idp)}, rules)) as gw:
        # a GET: purged, then sent once more with a fresh token; that answer (401 again) goes on
        reply = call(gw, "p", "/status/401")
        assert (reply.status, reply.body) == (401, b"status 401\n")
        stays(lambda: _asked_is(idp, "p", 2))
        assert [r["status"] for r in records(idp, "p")] == [200, 200]
        # the second 401 purged too: the next request fetches again
        route_token(gw, "p")
        assert asked(idp, "p") == 3
        # a status not in the list leaves the token alone
        assert call(gw, "p", "/status/403").status == 403
        route_token(gw, "p")
        assert asked(idp, "p") == 3

        # purge list []: no purge, no retry
        for _ in range(2):
            assert call(gw, "np", "/status/401").status == 401
        route_token(gw, "np")
        stays(lambda: _asked_is(idp, "np", 1))

        # another status in the list
        assert call(gw, "p403", "/status/403").status == 403
        stays(lambda: _asked_is(idp, "p403", 2))

        # a POST whose body went upstream is not sent again. A second try would run the plugin
        # again and, the token being purged, ask the IdP: one IdP request means one forward.
        reply = call(
            gw,
            "body",
            "/status/401",
            method="POST",
            body=b"x" * 4096,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert reply.status == 401
        stays(lambda: _asked_is(idp, "body", 1))
        route_token(gw, "body")  # the token was purged all the same
        assert asked(idp, "body") == 2
        # a POST without a body is safe to send again
        reply = call(
            gw, "empty", "/status/401", method="POST", body=b"", headers={"Content-Length": "0"}
        )
        assert reply.status == 401
        stays(lambda: _asked_is(idp, "empty", 2))

        text = scrape(gw)
        # p: 2 (first try and retry), p403: 2, body: 1, empty: 2
        assert metric(text, "bastion_upstream_token_cache_total", result="purged") == 7


def _asked_is(idp: Idp, scope: str, n: int) -> None:
    count = asked(idp, scope)
    assert count == n, (scope, count)


# === 9. purges by operators ======================================================================


def test_operator_purges_cli_and_admin_api(start_gateway: GatewayFactory, idp: Idp) -> None:
    rules = {
        "ra": {"oauth": oauth(idp, scopes=["ra"])},
        "rb": {"oauth": oauth(idp, scopes=["rb"])},
    }
    with start_gateway(admin=admin(), **setup({"oauth": oauth(idp)}, rules)) as gw:
        folder = gw.config_path.parent
        tokens = {name: route_token(gw, name) for name in rules}

        def changes(names: list[str]) -> None:
            """Within ~2 s (purges are seen within a second), `names` get new tokens and the
            other route keeps its own."""
            before = dict(tokens)

            def renewed() -> None:
                for name in names:
                    value = route_token(gw, name)
                    assert value != before[name], name
                    tokens[name] = value

            eventually(renewed, timeout=3, interval=0.1)
            for name in set(rules) - set(names):
                assert route_token(gw, name) == before[name], name

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return bastion("upstream-oauth", "purge", "-c", str(gw.config_path), *args, cwd=folder)

        done = cli("--route", "ra")
        assert done.returncode == 0, done.stderr
        assert "1" in done.stdout
        changes(["ra"])
        done = cli()
        assert done.returncode == 0, done.stderr
        changes(["ra", "rb"])

        reply = fetch(
            gw.admin_url,
            "/upstream-oauth/purge",
            "POST",
            headers=ADMIN_JSON,
            body=json.dumps({"route": "rb"}).encode(),
        )
        assert reply.status == 200, reply.body
        assert reply.json() == {"purged": 1, "route": "rb"}
        changes(["rb"])
        reply = fetch(gw.admin_url, "/upstream-oauth/purge", "POST", headers=ADMIN_JSON, body=b"{}")
        assert reply.status == 200, reply.body
        assert reply.json()["route"] is None
        changes(["ra", "rb"])

        # unknown routes
        done = cli("--route", "nowhere")
        assert done.returncode == 1
        assert "nowhere" in done.stderr and "Traceback" not in done.stderr
        reply = fetch(
            gw.admin_url,
            "/upstream-oauth/purge",
            "POST",
            headers=ADMIN_JSON,
            body=json.dumps({"route": "nowhere"}).encode(),
        )
        assert reply.status == 404, reply.body
        # the admin API wants its token
        assert fetch(gw.admin_url, "/upstream-oauth/purge", "POST", body=b"{}").status == 401
        stays(lambda: _purges_counted(idp))


def _purges_counted(idp: Idp) -> None:
    # ra: first, --route ra, all, admin all; rb: first, all, admin rb, admin all
    assert (asked(idp, "ra"), asked(idp, "rb")) == (4, 4)


# === 10. two workers =============================================================================


def test_two_workers_cache_each_and_both_hear_a_purge(
    start_gateway: GatewayFactory, idp: Idp
) -> None:
    plugin = {"oauth": oauth(idp)}
    with start_gateway("--workers", "2", admin=admin(), plugins={"upstream-oauth": plugin}) as gw:

        def two_workers() -> None:
            assert len(listening_workers(gw)) == 2

        eventually(two_workers, timeout=20)
        # new connections spread over the workers: each fetches once, then serves from memory
        seen: set[str] = set()
        for _ in range(60):
            seen.add(route_token(gw, None))
            if len(seen) == 2:
                break
        assert len(seen) == 2, "every connection went to one worker"
        assert idp.stats()["token_requests"] == 2
        assert len({route_token(gw, None) for _ in range(20)} - seen) == 0
        assert idp.stats()["token_requests"] == 2

        reply = fetch(gw.admin_url, "/upstream-oauth/purge", "POST", headers=ADMIN_JSON, body=b"{}")
        assert reply.status == 200, reply.body
        new: set[str] = set()
        deadline = time.monotonic() + 5
        recent: list[str] = []
        while time.monotonic() < deadline:
            value = route_token(gw, None)
            recent = [*recent[-9:], value]
            if value not in seen:
                new.add(value)
            if len(new) == 2 and not set(recent) & seen and len(recent) == 10:
                break
            time.sleep(0.05)
        assert len(new) == 2 and not set(recent) & seen, (new, recent)
        assert idp.stats()["token_requests"] == 4


# === 11. the redis strategy with Redis down ======================================================


def test_redis_down_fails_closed(tmp_path: Path, upstream_port: int, idp: Idp) -> None:
    with redis_server() as redis:
        store = f"redis://127.0.0.1:{redis.port}/0"
        rules = {
            "warm": {"oauth": oauth(idp, scopes=["warm"]), "cache": {"strategy": "redis"}},
            "cold": {"oauth": oauth(idp, scopes=["cold"]), "cache": {"strategy": "redis"}},
        }
        overrides = {"store": store, **setup({"oauth": oauth(idp)}, rules)}
        with with_gateway(tmp_path, upstream_port, "gw", **overrides) as gw:
            warm = route_token(gw, "warm")
            redis.stop()
            began = time.monotonic()
            reply = call(gw, "cold")
            assert time.monotonic() - began < 10
            assert reply.status == 503, (reply.status, reply.body)
            assert reply.json() == {"error": "store_unavailable"}
            assert asked(idp, "cold") == 0
            # a token this process already holds may still be used; a request never goes
            # upstream without one
            for _ in range(3):
                reply = call(gw, "warm")
                if reply.status == 200:
                    assert token_of(reply) == warm
                else:
                    assert (reply.status, reply.json()) == (503, {"error": "store_unavailable"})
            assert route_token(gw, None).startswith("Bearer tok-")  # memory strategy: serving


# === 13. coming from Kong ========================================================================

KONG_CONFIG = """
oauth:
  token_endpoint: {endpoint}
  grant_type: client_credentials
  client_id: post-client
  client_secret: post-secret
  username: null
  password: null
  scopes: [openid, kong]
  audience: []
  token_post_args: {{}}
  token_headers: {{}}
client:
  auth_method: client_secret_post
  client_secret_jwt_alg: HS512
  http_version: 1.1
  http_proxy: null
  http_proxy_authorization: null
  https_proxy: null
  https_proxy_authorization: null
  no_proxy: null
  keep_alive: true
  ssl_verify: false
  timeout: 10000
cache:
  strategy: memory
  memory:
    dictionary_name: kong_db_cache
  eagerly_expire: 5
  default_ttl: 3600
behavior:
  upstream_access_token_header_name: Authorization
  idp_error_response_status_code: 502
  idp_error_response_content_type: application/json; charset=utf-8
  idp_error_response_message: Failed to authenticate request to upstream
  idp_error_response_body_template: '{{ "code": "{{{{status}}}}", "message": "{{{{message}}}}" }}'
  purge_token_on_upstream_status_codes: [401]
"""


def kong_block(idp: Idp) -> dict[str, Any]:
    block: dict[str, Any] = yaml.safe_load(KONG_CONFIG.format(endpoint=idp.token_endpoint))
    return block


def validate(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return bastion("validate", "-c", str(path), cwd=tmp_path)


def test_kong_config_block_validates_and_works(
    start_gateway: GatewayFactory, idp: Idp, tmp_path: Path, upstream_port: int
) -> None:
    block = kong_block(idp)
    assert block["behavior"]["idp_error_response_body_template"] == (
        '{ "code": "{{status}}", "message": "{{message}}" }'
    )
    config = gateway_config(upstream_port, free_port(), plugins={"upstream-oauth": block})
    done = validate(tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr
    with start_gateway(plugins={"upstream-oauth": block}) as gw:
        assert re_match(TOKEN_RE, route_token(gw, None))
        assert records(idp)[-1]["form"]["scope"] == "openid kong"

    # Kong's cache.redis object is refused, pointing at the URL form
    block["cache"] = {"strategy": "redis", "redis": {"host": "redis", "port": 6379}}
    done = validate(
        tmp_path, gateway_config(upstream_port, free_port(), plugins={"upstream-oauth": block})
    )
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "plugins.upstream-oauth.cache.redis" in out
    assert "redis://" in out and "URL" in out
    assert "Traceback" not in out


def re_match(pattern: str, value: str) -> bool:
    return re.match(pattern, value) is not None


def plugin_config(upstream_port: int, plugin: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return gateway_config(upstream_port, free_port(), plugins={"upstream-oauth": plugin}, **extra)


@pytest.mark.parametrize("case", ["not-pem", "rsa-key-es256"])
def test_unusable_private_key_is_a_config_error(
    idp: Idp, tmp_path: Path, upstream_port: int, case: str
) -> None:
    client: dict[str, Any] = {"auth_method": "private_key_jwt"}
    if case == "not-pem":
        client["private_key"] = "not a pem key"
    else:
        client.update(private_key=generate_key("RS256").private_pem, private_key_jwt_alg="ES256")
    done = validate(tmp_path, plugin_config(upstream_port, {"oauth": oauth(idp), "client": client}))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "client.private_key:" in out
    assert "Traceback" not in out and "Warning" not in out


@pytest.mark.parametrize("case", ["private_key", "ssl_ca_file", "redis-without-redis-store"])
def test_build_errors_name_the_full_field_path(
    idp: Idp, tmp_path: Path, upstream_port: int, case: str
) -> None:
    plugin: dict[str, Any] = {"oauth": oauth(idp)}
    if case == "private_key":
        plugin["client"] = {"auth_method": "private_key_jwt", "private_key": "not a pem key"}
        path = "plugins.upstream-oauth.client.private_key"
    elif case == "ssl_ca_file":
        plugin["client"] = {"ssl_ca_file": str(tmp_path / "missing-ca.pem")}
        path = "plugins.upstream-oauth.client.ssl_ca_file"
    else:
        plugin["cache"] = {"strategy": "redis"}  # the gateway's store is SQLite
        path = "plugins.upstream-oauth.cache.redis"
    done = validate(tmp_path, plugin_config(upstream_port, plugin))
    assert done.returncode == 1
    assert path in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("form", ["rules", "route-map"])
def test_kong_route_plugin_without_instance_config(
    start_gateway: GatewayFactory, idp: Idp, tmp_path: Path, upstream_port: int, form: str
) -> None:
    block = kong_block(idp)
    routes: list[dict[str, Any]] = [
        {"name": "billing", "path": "/echo/billing", "service": "backend"},
        {"name": "all", "path": "/", "service": "backend"},
    ]
    if form == "rules":
        plugins = {"upstream-oauth": {"_rules_": [{"_match_route_": ["billing"], **block}]}}
    else:
        routes[0]["plugins"] = {"upstream-oauth": block}
        plugins = {}
    overrides = {"routes": routes, "plugins": plugins}
    done = validate(tmp_path, gateway_config(upstream_port, free_port(), **overrides))
    assert done.returncode == 0, done.stdout + done.stderr
    with start_gateway(**overrides) as gw:
        assert re_match(TOKEN_RE, token_of(fetch(gw.url, "/echo/billing")))
        assert received(fetch(gw.url, "/echo/elsewhere"), "Authorization") == []
