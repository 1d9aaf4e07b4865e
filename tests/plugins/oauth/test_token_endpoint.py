"""The token endpoint: Higress's answers (plain-text 400s in Higress's order), Bastion's RFC 6749
errors, HTTP Basic, scopes, 405 and the failed-secret lockout; tokens checked with PyJWT."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest

from bastion.errors import BodyTooLarge
from bastion.gateway.responses import Response
from bastion.plugins.oauth.step import OAuthStep
from bastion.plugins.oauth.token_endpoint import MAX_FORM
from bastion.store.base import StoreUnavailable
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import (
    CONSUMERS,
    ID1,
    ID2,
    SECRET1,
    SECRET2,
    Ctx,
    DownStore,
    FakeClock,
    decode,
    headers_of,
    instance_step,
    make_plugin,
    token_query,
)

PATH = "/api/oauth2/token"
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
TEXT = "text/plain; charset=utf-8"


def step(store: Any, clock: FakeClock, **fields: Any) -> OAuthStep:
    return instance_step(make_plugin(store, clock, **fields))


def get(
    step_: OAuthStep, query: str, headers: dict[str, str] | None = None, **ctx: Any
) -> Response:
    response = asyncio.run(step_.on_request(Ctx("GET", PATH, query, headers, **ctx)))
    assert response is not None
    return response


def post(
    step_: OAuthStep, body: bytes | str, content_type: str | None = FORM,
    headers: dict[str, str] | None = None, **ctx: Any,
) -> Response:  # fmt: skip
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    raw = body.encode() if isinstance(body, str) else body
    response = asyncio.run(step_.on_request(Ctx("POST", PATH, "", all_headers, raw, **ctx)))
    assert response is not None
    return response


def basic(client_id: str, secret: str, *, encode: bool = True) -> dict[str, str]:
    if encode:  # RFC 6749 §2.3.1: form-encode each, then Base64 "id:secret"
        client_id, secret = quote(client_id, safe=""), quote(secret, safe="")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def body_json(response: Response) -> dict[str, Any]:
    payload = orjson.loads(response.body)
    assert isinstance(payload, dict)
    return payload


# --- success ----------------------------------------------------------------------------------


def assert_token_response(
    response: Response, secret: str = SECRET1, ttl: int = 7200
) -> dict[str, Any]:
    assert response.status == 200
    assert headers_of(response) == {"content-type": "application/json", **NO_STORE}
    payload = body_json(response)
    assert set(payload) == {"token_type", "access_token", "expires_in"}
    assert payload["token_type"] == "bearer"
    assert payload["expires_in"] == ttl
    claims = decode(payload["access_token"], secret)
    assert claims["exp"] - claims["iat"] == ttl
    return claims


def test_get_issues_a_token(store: SqliteStore, clock: FakeClock) -> None:
    claims = assert_token_response(get(step(store, clock), token_query()))
    assert claims["sub"] == "consumer1"
    assert claims["client_id"] == ID1
    assert claims["aud"] == "default"
    assert claims["iat"] == int(clock.time())


@pytest.mark.parametrize(
    "content_type",
    [FORM, f"{FORM}; charset=utf-8", "Application/X-WWW-Form-Urlencoded"],
)
def test_post_issues_a_token(store: SqliteStore, clock: FakeClock, content_type: str) -> None:
    response = post(step(store, clock), token_query(ID2, SECRET2), content_type)
    assert assert_token_response(response, SECRET2)["sub"] == "consumer2"


def test_configured_ttl_and_issuer(store: SqliteStore, clock: FakeClock) -> None:
    response = get(step(store, clock, token_ttl=60, issuer="Higress-Gateway"), token_query())
    assert_token_response(response, ttl=60)


def test_route_bound_token_names_the_issuing_route(store: SqliteStore, clock: FakeClock) -> None:
    response = get(step(store, clock, global_credentials=False), token_query(), route="route-a")
    payload = body_json(response)
    assert decode(payload["access_token"], audience="route-a")["aud"] == "route-a"


def test_token_endpoint_matches_the_path_suffix(store: SqliteStore, clock: FakeClock) -> None:
    s = step(store, clock, auth_path="token")
    for path in ["/token", "/a/b/token", "/api/v1/token"]:
        response = asyncio.run(s.on_request(Ctx("GET", path, token_query())))
        assert response is not None and response.status == 200, path


@pytest.mark.parametrize("path", ["/api/oauth2/token/", "/api/oauth2/tokens", "/api/xoauth2/token"])
def test_other_paths_are_not_the_token_endpoint(
    store: SqliteStore, clock: FakeClock, path: str
) -> None:
    response = asyncio.run(step(store, clock).on_request(Ctx("GET", path, token_query())))
    assert response is not None
    assert (response.status, response.body) == (401, b"Invalid Jwt token")


def test_the_token_endpoint_never_forwards(store: SqliteStore, clock: FakeClock) -> None:
    ctx = Ctx("GET", PATH, token_query())
    assert asyncio.run(step(store, clock).on_request(ctx)) is not None
    assert ctx.headers_set_upstream() == {} and ctx.consumer is None


def test_extra_parameters_are_ignored(store: SqliteStore, clock: FakeClock) -> None:
    assert_token_response(get(step(store, clock), token_query(foo="bar", state="x")))


# --- Higress's 400s ---------------------------------------------------------------------------

HIGRESS_400: list[tuple[str, str, str]] = [
    # (test id, parameters, message), in Higress's order of checks
    ("grant_type missing", f"client_id={ID1}&client_secret={SECRET1}", "grant_type is missing"),
    ("grant_type empty", f"grant_type=&client_id={ID1}", "grant_type is missing"),
    (
        "grant_type password",
        f"grant_type=password&client_id={ID1}&client_secret={SECRET1}",
        "grant_type:password is not support",
    ),
    (
        "grant_type authorization_code",
        "grant_type=authorization_code",
        "grant_type:authorization_code is not support",
    ),
    ("grant before client_id", "grant_type=implicit", "grant_type:implicit is not support"),
    ("client_id missing", "grant_type=client_credentials", "client_id is missing"),
    ("client_id empty", "grant_type=client_credentials&client_id=", "client_id is missing"),
    (
        "client_id missing, secret given",
        f"grant_type=client_credentials&client_secret={SECRET1}",
        "client_id is missing",
    ),
    (
        "unknown client_id before missing secret",
        "grant_type=client_credentials&client_id=nobody",
        "invalid client_id or client_secret",
    ),
    (
        "unknown client_id",
        f"grant_type=client_credentials&client_id=nobody&client_secret={SECRET1}",
        "invalid client_id or client_secret",
    ),
    (
        "client_secret missing",
        f"grant_type=client_credentials&client_id={ID1}",
        "client_secret is missing",
    ),
    (
        "client_secret empty",
        f"grant_type=client_credentials&client_id={ID1}&client_secret=",
        "client_secret is missing",
    ),
    ("wrong secret", token_query(ID1, SECRET2), "invalid client_id or client_secret"),
    ("secret prefix", token_query(ID1, SECRET1[:-1]), "invalid client_id or client_secret"),
    ("secret longer", token_query(ID1, SECRET1 + "x"), "invalid client_id or client_secret"),
    ("repeated client_id", token_query() + f"&client_id={ID1}", "client_id is repeated"),
    (
        "repeated grant_type",
        "grant_type=client_credentials&" + token_query(),
        "grant_type is repeated",
    ),
]


def assert_text(response: Response, status: int, message: str) -> None:
    assert (response.status, response.body.decode()) == (status, message)
    assert headers_of(response) == {"content-type": TEXT, **NO_STORE}


@pytest.mark.parametrize(("query", "message"), [(q, m) for _, q, m in HIGRESS_400],
                         ids=[i for i, _, _ in HIGRESS_400])  # fmt: skip
def test_get_errors_are_higress_plain_text_400s(
    store: SqliteStore, clock: FakeClock, query: str, message: str
) -> None:
    assert_text(get(step(store, clock), query), 400, message)


@pytest.mark.parametrize(("body", "message"), [(q, m) for _, q, m in HIGRESS_400],
                         ids=[i for i, _, _ in HIGRESS_400])  # fmt: skip
def test_post_errors_are_higress_plain_text_400s(
    store: SqliteStore, clock: FakeClock, body: str, message: str
) -> None:
    assert_text(post(step(store, clock), body), 400, message)


def test_get_without_query_is_authorize_parameters_are_missing(
    store: SqliteStore, clock: FakeClock
) -> None:
    assert_text(get(step(store, clock), ""), 400, "Authorize parameters are missing")


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "multipart/form-data"]
)
def test_post_without_urlencoded_content_type(
    store: SqliteStore, clock: FakeClock, content_type: str | None
) -> None:
    ctx_body = token_query()
    assert_text(post(step(store, clock), ctx_body, content_type), 400, "Invalid content-type")


def test_post_reads_the_body_not_the_query(store: SqliteStore, clock: FakeClock) -> None:
    ctx = Ctx("POST", PATH, token_query(), {"Content-Type": FORM}, b"")
    response = asyncio.run(step(store, clock).on_request(ctx))
    assert response is not None
    assert_text(response, 400, "grant_type is missing")
    assert ctx.body_reads == 1


def test_post_body_not_utf8(store: SqliteStore, clock: FakeClock) -> None:
    assert_text(post(step(store, clock), b"grant_type=\xff\xfe"), 400, "the body is not UTF-8")


def test_post_body_over_the_limit_is_left_to_the_pipeline(
    store: SqliteStore, clock: FakeClock
) -> None:
    body = token_query() + "&pad=" + "x" * MAX_FORM
    with pytest.raises(BodyTooLarge):  # the pipeline answers 413
        post(step(store, clock), body)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_get_405_with_allow(
    store: SqliteStore, clock: FakeClock, method: str
) -> None:
    ctx = Ctx(method, PATH, token_query(), {"Content-Type": FORM}, token_query().encode())
    response = asyncio.run(step(store, clock).on_request(ctx))
    assert response is not None
    assert response.status == 405
    assert headers_of(response) == {"content-type": TEXT, **NO_STORE, "allow": "GET, POST"}
    assert ctx.headers_set_upstream() == {}


def test_405_in_rfc_form(store: SqliteStore, clock: FakeClock) -> None:
    ctx = Ctx("PUT", PATH, "", {"Accept": "application/json"})
    response = asyncio.run(step(store, clock).on_request(ctx))
    assert response is not None and response.status == 405
    assert headers_of(response)["allow"] == "GET, POST"
    assert body_json(response)["error"] == "invalid_request"


# --- RFC 6749 errors --------------------------------------------------------------------------

RFC_ERRORS: list[tuple[str, str, int, str]] = [
    ("no query", "", 400, "invalid_request"),
    ("grant_type missing", f"client_id={ID1}", 400, "invalid_request"),
    ("grant_type password", "grant_type=password", 400, "unsupported_grant_type"),
    ("client_id missing", "grant_type=client_credentials", 401, "invalid_client"),
    ("unknown client", "grant_type=client_credentials&client_id=nobody", 401, "invalid_client"),
    ("secret missing", f"grant_type=client_credentials&client_id={ID1}", 401, "invalid_client"),
    ("wrong secret", token_query(ID1, SECRET2), 401, "invalid_client"),
    ("repeated", token_query() + "&scope=a&scope=b", 400, "invalid_request"),
    ("scope not granted", token_query(ID2, SECRET2, scope="admin"), 400, "invalid_scope"),
]


def assert_rfc(response: Response, status: int, error: str) -> None:
    assert response.status == status
    expected = {"content-type": "application/json", **NO_STORE}
    if status == 401:
        expected["www-authenticate"] = 'Basic realm="bastion"'
    assert headers_of(response) == expected
    payload = body_json(response)
    assert set(payload) == {"error", "error_description"}
    assert payload["error"] == error
    assert isinstance(payload["error_description"], str) and payload["error_description"]


@pytest.mark.parametrize(("query", "status", "error"), [(q, s, e) for _, q, s, e in RFC_ERRORS],
                         ids=[i for i, *_ in RFC_ERRORS])  # fmt: skip
@pytest.mark.parametrize(
    ("accept", "fields"),
    [
        ("application/json", {}),
        ("application/json, text/plain;q=0.5", {}),
        (None, {"rfc_errors": True}),
        ("text/plain", {"rfc_errors": True}),
    ],
)
def test_rfc_6749_errors_when_asked_for_json(
    store: SqliteStore, clock: FakeClock, query: str, status: int, error: str,
    accept: str | None, fields: dict[str, Any],
) -> None:  # fmt: skip
    headers = {"Accept": accept} if accept is not None else None
    assert_rfc(get(step(store, clock, **fields), query, headers), status, error)


def test_the_description_is_higress_message(store: SqliteStore, clock: FakeClock) -> None:
    response = get(step(store, clock, rfc_errors=True), "grant_type=password")
    assert body_json(response)["error_description"] == "grant_type:password is not support"


def test_rfc_errors_on_post_without_urlencoded_body(store: SqliteStore, clock: FakeClock) -> None:
    response = post(step(store, clock), "{}", "application/json", {"Accept": "application/json"})
    assert_rfc(response, 400, "invalid_request")


def test_success_is_the_same_in_rfc_mode(store: SqliteStore, clock: FakeClock) -> None:
    response = get(
        step(store, clock, rfc_errors=True), token_query(), {"Accept": "application/json"}
    )
    assert_token_response(response)


# --- HTTP Basic -------------------------------------------------------------------------------

ODD_ID, ODD_SECRET = "svc:1+a/b%c", "p@ss:w0rd+/=%&?" + "s" * 32
ODD = {"name": "odd", "client_id": ODD_ID, "client_secret": ODD_SECRET}


def test_basic_authentication(store: SqliteStore, clock: FakeClock) -> None:
    response = get(step(store, clock), "grant_type=client_credentials", basic(ID1, SECRET1))
    assert assert_token_response(response)["sub"] == "consumer1"


def test_basic_authentication_with_url_encoded_id_and_secret(
    store: SqliteStore, clock: FakeClock
) -> None:
    s = step(store, clock, consumers=[*CONSUMERS, ODD])
    response = post(s, "grant_type=client_credentials", headers=basic(ODD_ID, ODD_SECRET))
    claims = assert_token_response(response, ODD_SECRET)
    assert (claims["sub"], claims["client_id"]) == ("odd", ODD_ID)


def test_form_credentials_with_reserved_characters(store: SqliteStore, clock: FakeClock) -> None:
    s = step(store, clock, consumers=[*CONSUMERS, ODD])
    body = urlencode(
        {"grant_type": "client_credentials", "client_id": ODD_ID, "client_secret": ODD_SECRET}
    )
    assert assert_token_response(post(s, body), ODD_SECRET)["sub"] == "odd"


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC"])
def test_basic_scheme_is_case_insensitive(
    store: SqliteStore, clock: FakeClock, scheme: str
) -> None:
    header = basic(ID1, SECRET1)["Authorization"].replace("Basic", scheme)
    response = get(step(store, clock), "grant_type=client_credentials", {"Authorization": header})
    assert response.status == 200


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("grant_type=client_credentials&client_id=" + ID1, 400, "invalid_request"),
        ("grant_type=client_credentials&client_secret=" + SECRET1, 400, "invalid_request"),
        (token_query(), 400, "invalid_request"),
        ("grant_type=password", 400, "unsupported_grant_type"),
    ],
    ids=["plus client_id", "plus client_secret", "plus both", "wrong grant"],
)
def test_basic_plus_form_credentials_are_refused_with_rfc_errors(
    store: SqliteStore, clock: FakeClock, query: str, status: int, error: str
) -> None:
    assert_rfc(get(step(store, clock), query, basic(ID1, SECRET1)), status, error)


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(ID1, SECRET2), ("nobody", SECRET1), (ID1, ""), ("", SECRET1)],
    ids=["wrong secret", "unknown id", "empty secret", "empty id"],
)
def test_basic_failures_are_invalid_client_401(
    store: SqliteStore, clock: FakeClock, client_id: str, secret: str
) -> None:
    response = get(step(store, clock), "grant_type=client_credentials", basic(client_id, secret))
    assert_rfc(response, 401, "invalid_client")


def test_a_bearer_header_on_the_token_endpoint_is_not_basic(
    store: SqliteStore, clock: FakeClock
) -> None:
    response = get(step(store, clock), token_query(), {"Authorization": "Bearer abc"})
    assert_token_response(response)


@pytest.mark.parametrize(
    "header",
    ["Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(),
     "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic "],
    ids=["not base64", "no colon", "not utf-8", "empty"],
)  # fmt: skip
def test_malformed_basic_credentials_are_invalid_client(
    store: SqliteStore, clock: FakeClock, header: str
) -> None:
    response = get(step(store, clock), "grant_type=client_credentials", {"Authorization": header})
    assert_rfc(response, 401, "invalid_client")


# --- scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "scope", "granted"),
    [
        ((ID2, SECRET2), "read", "read"),
        ((ID2, SECRET2), "read write", "read write"),
        ((ID2, SECRET2), "write read read", "write read"),
        ((ID1, SECRET1), "anything at all", "anything at all"),  # no scopes list: as Higress
    ],
)
def test_scopes_granted(
    store: SqliteStore, clock: FakeClock, client: tuple[str, str], scope: str, granted: str
) -> None:
    response = get(step(store, clock), token_query(*client, scope=scope))
    assert response.status == 200
    payload = body_json(response)
    assert payload["scope"] == granted
    assert decode(payload["access_token"], client[1])["scope"] == granted


@pytest.mark.parametrize("scope", ["admin", "read admin", "READ"])
def test_scopes_are_limited_to_the_consumers_scopes(
    store: SqliteStore, clock: FakeClock, scope: str
) -> None:
    response = get(step(store, clock), token_query(ID2, SECRET2, scope=scope))
    assert response.status == 400
    assert "is not granted to this client" in response.body.decode()
    assert headers_of(response) == {"content-type": TEXT, **NO_STORE}


def test_empty_scope_is_no_scope(store: SqliteStore, clock: FakeClock) -> None:
    response = get(step(store, clock), token_query(ID2, SECRET2, scope=""))
    assert "scope" not in body_json(response)
    assert "scope" not in decode(body_json(response)["access_token"], SECRET2)


def test_consumer_with_empty_scopes_list_gets_none(store: SqliteStore, clock: FakeClock) -> None:
    s = step(store, clock, consumers=[{**CONSUMERS[0], "scopes": []}])
    assert get(s, token_query(scope="read")).status == 400
    assert get(s, token_query()).status == 200


# --- lockout ----------------------------------------------------------------------------------


def lockout_step(store: SqliteStore, clock: FakeClock, **fields: Any) -> OAuthStep:
    return step(store, clock, lockout={"max_failures": 3, "window": 60}, **fields)


def fail(s: OAuthStep, times: int, client_id: str = ID1, ip: str = "10.0.0.1") -> None:
    for _ in range(times):
        response = get(s, token_query(client_id, "wrong-secret"), client_ip=ip)
        assert response.status == 400, response


def assert_locked(response: Response, retry_after: str = "60") -> None:
    assert response.status == 429
    assert headers_of(response) == {"content-type": TEXT, **NO_STORE, "retry-after": retry_after}


def test_max_failures_then_429_even_for_the_right_secret(
    store: SqliteStore, clock: FakeClock
) -> None:
    s = lockout_step(store, clock)
    fail(s, 3)
    assert_locked(get(s, token_query()))
    assert_locked(get(s, token_query(ID1, "wrong-secret")))


def test_failures_below_the_limit_do_not_lock(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    fail(s, 2)
    assert get(s, token_query()).status == 200


def test_lockout_is_per_client_id_across_addresses(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        fail(s, 1, ID1, ip)
    assert_locked(get(s, token_query(), client_ip="10.0.0.9"))
    assert get(s, token_query(ID2, SECRET2), client_ip="10.0.0.9").status == 200


def test_lockout_is_per_address_across_client_ids(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    fail(s, 1, ID1)
    fail(s, 1, ID2)
    fail(s, 1, "nobody")  # unknown ids count too
    assert_locked(get(s, token_query(ID2, SECRET2)))
    assert get(s, token_query(ID2, SECRET2), client_ip="10.0.0.2").status == 200


def test_lockout_ends_after_the_window(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    fail(s, 3)
    clock.advance(20)
    assert_locked(get(s, token_query()), "40")
    clock.advance(39.5)
    assert_locked(get(s, token_query()), "1")
    clock.advance(1)
    assert get(s, token_query()).status == 200


def test_lockout_in_rfc_form(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    fail(s, 3)
    response = get(s, token_query(), {"Accept": "application/json"})
    assert response.status == 429
    assert headers_of(response) == {
        "content-type": "application/json",
        **NO_STORE,
        "retry-after": "60",
    }
    assert body_json(response)["error"] == "too_many_attempts"


def test_lockout_with_basic_credentials(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    for _ in range(3):
        assert get(s, "grant_type=client_credentials", basic(ID1, "bad")).status == 401
    assert get(s, "grant_type=client_credentials", basic(ID1, SECRET1)).status == 429


def test_missing_secret_and_bad_grant_do_not_count(store: SqliteStore, clock: FakeClock) -> None:
    s = lockout_step(store, clock)
    for _ in range(5):
        assert get(s, f"grant_type=client_credentials&client_id={ID1}").status == 400
        assert get(s, "grant_type=password").status == 400
    assert get(s, token_query()).status == 200


def test_lockout_is_shared_through_the_store(store: SqliteStore, clock: FakeClock) -> None:
    """Two plugins (two nodes) on one store see one count."""
    first, second = lockout_step(store, clock), lockout_step(store, clock)
    fail(first, 2)
    fail(second, 1)
    assert_locked(get(first, token_query()))
    assert_locked(get(second, token_query()))


def test_default_lockout_is_ten_failures(store: SqliteStore, clock: FakeClock) -> None:
    s = step(store, clock)
    fail(s, 9)
    assert get(s, token_query()).status == 200
    fail(s, 1)
    assert_locked(get(s, token_query()))


# --- store down -------------------------------------------------------------------------------


def test_store_down_propagates_from_the_token_endpoint(clock: FakeClock) -> None:
    s = step(DownStore(), clock)
    with pytest.raises(StoreUnavailable):  # the pipeline answers 503
        get(s, token_query())


def test_errors_before_the_store_is_needed_still_answer(clock: FakeClock) -> None:
    s = step(DownStore(), clock)
    assert get(s, "grant_type=password").status == 400
    assert get(s, "").status == 400
