"""The IdP fixtures work: the controllable test IdP (idp_app.py) and the real oidc-provider."""

from __future__ import annotations

import base64
import http.client
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.idp import (
    ASSERTION_TYPE,
    DEFAULT_CLIENTS,
    HttpResult,
    Idp,
    SigningKey,
    client_assertion,
    client_auth,
    generate_key,
    http_request,
    post_form,
    start_tls_idp,
)
from tests.e2e.oidc_provider import OidcClient, OidcProvider

POST = DEFAULT_CLIENTS["post-client"]
BASIC = DEFAULT_CLIENTS["basic-client"]
JWT = DEFAULT_CLIENTS["jwt-client"]


def cc_token(idp: Idp, auth_method: str, client_id: str, **kw: Any) -> HttpResult:
    scope = kw.pop("scope", "openid")
    form, headers = client_auth(auth_method, client_id, idp.token_endpoint, **kw)
    return idp.token({"grant_type": "client_credentials", "scope": scope, **form}, headers)


def assert_error(result: HttpResult, status: int, error: str) -> None:
    assert result.status == status, result.body
    assert result.json()["error"] == error, result.body


# --- The test IdP: grants and client authentication -----------------------------------------------


def test_client_secret_post(idp: Idp) -> None:
    result = cc_token(idp, "client_secret_post", "post-client", secret=POST["secret"])
    assert result.status == 200, result.body
    body = result.json()
    assert body["access_token"].startswith("tok-1-")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid"
    assert result.headers["cache-control"] == "no-store"
    (record,) = idp.stats()["requests"]
    assert record["auth_method"] == "client_secret_post"
    assert record["client_id"] == "post-client"
    assert record["status"] == 200
    assert record["form"]["client_secret"] == POST["secret"]
    assert record["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert_error(
        cc_token(idp, "client_secret_post", "post-client", secret="no"), 401, "invalid_client"
    )


def test_client_secret_basic_form_encodes_id_and_secret(idp: Idp) -> None:
    result = cc_token(idp, "client_secret_basic", "basic-client", secret=BASIC["secret"])
    assert result.status == 200, result.body
    assert idp.stats()["requests"][0]["auth_method"] == "client_secret_basic"
    # RFC 6749 §2.3.1: the secret is form-encoded before base64; the raw secret does not match.
    raw = base64.b64encode(f"basic-client:{BASIC['secret']}".encode()).decode()
    result = idp.token({"grant_type": "client_credentials"}, {"Authorization": f"Basic {raw}"})
    assert_error(result, 401, "invalid_client")
    assert result.headers["www-authenticate"].startswith("Basic")
    # A client registered for another method may not use Basic.
    result = cc_token(idp, "client_secret_basic", "post-client", secret=POST["secret"])
    assert_error(result, 401, "invalid_client")


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_client_secret_jwt(idp: Idp, alg: str) -> None:
    result = cc_token(idp, "client_secret_jwt", "jwt-client", secret=JWT["secret"], alg=alg)
    assert result.status == 200, result.body
    assert idp.stats()["requests"][0]["auth_method"] == "client_secret_jwt"
    wrong = cc_token(idp, "client_secret_jwt", "jwt-client", secret="x" * 64, alg=alg)
    assert_error(wrong, 401, "invalid_client")


def test_client_assertion_claims_are_checked(idp: Idp) -> None:
    secret, endpoint = JWT["secret"], idp.token_endpoint

    def send(assertion: str) -> HttpResult:
        form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        return idp.token({"grant_type": "client_credentials", **form})

    good = client_assertion("jwt-client", secret, endpoint)
    assert send(good).status == 200
    assert_error(send(good), 401, "invalid_client")  # the same jti again
    for claims in (
        {"aud": "http://127.0.0.1:1/token"},
        {"exp": int(time.time()) - 120},
        {"jti": None},
        {"sub": "someone-else"},
        {"iss": "someone-else"},
    ):
        assert_error(
            send(client_assertion("jwt-client", secret, endpoint, **claims)), 401, "invalid_client"
        )
    form = {"client_assertion_type": "urn:other", "client_assertion": good}
    assert_error(idp.token({"grant_type": "client_credentials", **form}), 400, "invalid_request")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_private_key_jwt(idp: Idp, alg: str) -> None:
    key = generate_key(alg)
    idp.control(
        clients={"pk-client": {"public_jwk": key.public_jwk, "auth_method": "private_key_jwt"}}
    )
    result = cc_token(idp, "private_key_jwt", "pk-client", key=key, scope="api:read")
    assert result.status == 200, result.body
    assert result.json()["scope"] == "api:read"
    assert idp.stats()["requests"][0]["auth_method"] == "private_key_jwt"
    other = generate_key(alg, kid=key.kid)
    assert_error(cc_token(idp, "private_key_jwt", "pk-client", key=other), 401, "invalid_client")


def test_none_only_for_public_clients(idp: Idp) -> None:
    result = cc_token(idp, "none", "public-client")
    assert result.status == 200, result.body
    assert idp.stats()["requests"][0]["auth_method"] == "none"
    assert_error(cc_token(idp, "none", "post-client"), 401, "invalid_client")
    assert_error(cc_token(idp, "none", "nobody"), 401, "invalid_client")
    assert_error(idp.token({"grant_type": "client_credentials"}), 401, "invalid_client")


def test_password_grant_and_bad_grants(idp: Idp) -> None:
    auth = {"client_id": "post-client", "client_secret": POST["secret"]}
    ok = idp.token(
        {"grant_type": "password", "username": "alice", "password": "alice-password", **auth}
    )
    assert ok.status == 200, ok.body
    assert "scope" not in ok.json()
    bad = idp.token({"grant_type": "password", "username": "alice", "password": "nope", **auth})
    assert_error(bad, 400, "invalid_grant")
    idp.control(users={"bob": "bob-pw", "alice": None})
    ok = idp.token({"grant_type": "password", "username": "bob", "password": "bob-pw", **auth})
    assert ok.status == 200
    gone = idp.token(
        {"grant_type": "password", "username": "alice", "password": "alice-password", **auth}
    )
    assert_error(gone, 400, "invalid_grant")
    assert_error(idp.token({"grant_type": "refresh_token", **auth}), 400, "unsupported_grant_type")
    assert_error(idp.token(auth), 400, "invalid_request")
    as_json = http_request(
        "POST", idp.token_endpoint, body=b"{}", headers={"Content-Type": "application/json"}
    )
    assert_error(as_json, 400, "invalid_request")


def test_tokens_are_unique(idp: Idp) -> None:
    tokens = {
        cc_token(idp, "client_secret_post", "post-client", secret=POST["secret"]).json()[
            "access_token"
        ]
        for _ in range(5)
    }
    assert len(tokens) == 5
    assert idp.stats()["tokens_issued"] == 5


# --- The test IdP: /control, /stats, /reset ------------------------------------------------------


def post_client_token(idp: Idp, timeout: float = 10) -> HttpResult:
    form = {
        "grant_type": "client_credentials",
        "client_id": "post-client",
        "client_secret": POST["secret"],
    }
    return post_form(idp.token_endpoint, form, timeout=timeout)


def test_control_expires_in_and_token_type(idp: Idp) -> None:
    idp.control(expires_in=None, token_type="DPoP")
    body = post_client_token(idp).json()
    assert "expires_in" not in body
    assert body["token_type"] == "DPoP"
    idp.control(expires_in=2)
    assert post_client_token(idp).json()["expires_in"] == 2
    idp.reset()
    assert post_client_token(idp).json()["expires_in"] == 3600


def test_control_delay(idp: Idp) -> None:
    idp.control(delay=0.5)
    started = time.monotonic()
    assert post_client_token(idp).status == 200
    assert time.monotonic() - started >= 0.5
    with pytest.raises(TimeoutError):
        post_client_token(idp, timeout=0.2)


def test_control_failures(idp: Idp) -> None:
    idp.control(fail="status:503")
    result = post_client_token(idp)
    assert result.status == 503
    assert result.json()["error"] == "server_error"
    idp.control(fail="status:400")
    assert post_client_token(idp).status == 400
    idp.control(fail="not_json")
    result = post_client_token(idp)
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/html")
    idp.control(fail="no_token")
    result = post_client_token(idp)
    assert result.status == 200
    assert "access_token" not in result.json()
    idp.control(fail="close")
    with pytest.raises(http.client.RemoteDisconnected):
        post_client_token(idp)
    idp.control(fail=None)
    assert "access_token" in post_client_token(idp).json()
    stats = idp.stats()
    assert stats["token_requests"] == 6
    assert stats["tokens_issued"] == 1
    assert [r["status"] for r in stats["requests"]] == [503, 400, 200, 200, None, 200]


def test_control_rejects_bad_settings(idp: Idp) -> None:
    for payload in (
        b'{"fail": "sometimes"}',
        b'{"nope": 1}',
        b'{"expires_in": "soon"}',
        b'{"clients": {"c": {"auth_method": "magic"}}}',
        b"[]",
    ):
        result = http_request(
            "POST", idp.url + "/control", body=payload, headers={"Content-Type": "application/json"}
        )
        assert result.status == 400, payload
    assert idp.settings()["fail"] is None


def test_stats_count_every_request_and_keep_the_last_100(idp: Idp) -> None:
    for i in range(103):
        post_form(idp.token_endpoint, {"grant_type": "client_credentials", "client_id": f"c{i}"})
    stats = idp.stats()
    assert stats["token_requests"] == 103
    assert stats["tokens_issued"] == 0
    assert len(stats["requests"]) == 100
    assert stats["requests"][0]["form"]["client_id"] == "c3"
    assert stats["requests"][-1]["form"]["client_id"] == "c102"
    assert all(r["status"] == 401 for r in stats["requests"])
    assert stats["requests"][0]["time"] <= stats["requests"][-1]["time"] <= time.time()
    idp.reset()
    assert idp.stats() == {"token_requests": 0, "tokens_issued": 0, "requests": []}


def test_tls_idp(tmp_path: Path) -> None:
    with start_tls_idp(tmp_path) as (server, ca_file):
        assert server.https
        assert server.token_endpoint.startswith("https://127.0.0.1:")
        form = {
            "grant_type": "client_credentials",
            "client_id": "post-client",
            "client_secret": POST["secret"],
        }
        result = post_form(server.token_endpoint, form, ca_file=ca_file)
        assert result.status == 200, result.body
        assert server.stats()["token_requests"] == 1
        with pytest.raises(ssl.SSLCertVerificationError):
            post_form(server.token_endpoint, form)  # the system CAs do not know the test CA
        # client_secret_jwt's audience is the https URL.
        result = post_form(
            server.token_endpoint,
            {
                "grant_type": "client_credentials",
                **client_auth(
                    "client_secret_jwt", "jwt-client", server.token_endpoint, secret=JWT["secret"]
                )[0],
            },
            ca_file=ca_file,
        )
        assert result.status == 200, result.body


# --- oidc-provider -------------------------------------------------------------------------------


def oidc_token(
    provider: OidcProvider,
    client: OidcClient,
    scope: str,
    secret: str | None = None,
    key: SigningKey | None = None,
) -> HttpResult:
    form, headers = client_auth(
        client.auth_method,
        client.client_id,
        provider.token_endpoint,
        secret=secret if secret is not None else client.secret,
        key=key or client.key,
    )
    return post_form(
        provider.token_endpoint,
        {"grant_type": "client_credentials", "scope": scope, **form},
        headers=headers,
    )


def test_oidc_provider_discovery(oidc_provider: OidcProvider) -> None:
    assert oidc_provider.issuer == f"http://127.0.0.1:{oidc_provider.port}"
    assert oidc_provider.token_endpoint == f"{oidc_provider.issuer}/token"
    methods = oidc_provider.discovery["token_endpoint_auth_methods_supported"]
    assert {
        "client_secret_post",
        "client_secret_basic",
        "client_secret_jwt",
        "private_key_jwt",
        "none",
    } <= set(methods)
    assert "client_credentials" in oidc_provider.discovery["grant_types_supported"]
    assert (
        http_request("GET", oidc_provider.jwks_uri).json()["keys"][0]["kid"] == "provider-rs256-1"
    )


@pytest.mark.parametrize(
    "name",
    [
        "client_secret_post",
        "client_secret_basic",
        "client_secret_jwt",
        "private_key_jwt",
        "private_key_jwt_es256",
        "none",
    ],
)
@pytest.mark.parametrize("scope", ["openid", "api:read"])
def test_oidc_provider_client_credentials(
    oidc_provider: OidcProvider, name: str, scope: str
) -> None:
    client = oidc_provider.clients[name]
    result = oidc_token(oidc_provider, client, scope)
    assert result.status == 200, result.body
    body = result.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == scope
    assert body["expires_in"] > 0
    # The token is real: the provider's introspection says it is active.
    post = oidc_provider.clients["client_secret_post"]
    answer = post_form(
        oidc_provider.introspection_endpoint,
        {
            "token": body["access_token"],
            "client_id": post.client_id,
            "client_secret": post.secret or "",
        },
    )
    assert answer.json()["active"] is True
    assert answer.json()["client_id"] == client.client_id


@pytest.mark.parametrize(
    "name",
    [
        "client_secret_post",
        "client_secret_basic",
        "client_secret_jwt",
        "private_key_jwt",
        "private_key_jwt_es256",
        "none",
    ],
)
def test_oidc_provider_rejects_wrong_credentials(oidc_provider: OidcProvider, name: str) -> None:
    client = oidc_provider.clients[name]
    if name == "none":
        result = oidc_token(oidc_provider, OidcClient("not-registered", "none"), "openid")
    elif client.key is not None:
        result = oidc_token(
            oidc_provider, client, "openid", key=generate_key(client.key.alg, client.key.kid)
        )
    else:
        result = oidc_token(oidc_provider, client, "openid", secret="wrong-" * 11)
    assert_error(result, 401, "invalid_client")


def test_oidc_provider_rejects_unknown_static_scope(oidc_provider: OidcProvider) -> None:
    result = oidc_token(oidc_provider, oidc_provider.clients["client_secret_post"], "api:write")
    assert_error(result, 400, "invalid_scope")
