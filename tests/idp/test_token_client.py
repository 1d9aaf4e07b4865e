"""fetch_token against an httpx.MockTransport IdP: the request it sends, how it reads the answer,
and every IdpError kind, whose `detail` is safe to log (token fields blanked, cut short, and no
client secret anywhere)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest

from bastion.idp.client_auth import ClientCredentials
from bastion.idp.token_client import (
    MAX_BODY_LOGGED,
    IdpError,
    IssuedToken,
    TokenRequest,
    fetch_token,
)

ENDPOINT = "https://idp.example.com/oauth2/token"
SECRET = "very-secret-client-secret-0123456789"
POST = ClientCredentials("client_secret_post", "gateway", SECRET)

Handler = Callable[[httpx.Request], Any]


def request(
    form: tuple[tuple[str, str], ...] = (("grant_type", "client_credentials"),),
    headers: tuple[tuple[str, str], ...] = (),
    credentials: ClientCredentials = POST,
) -> TokenRequest:
    return TokenRequest(ENDPOINT, form, headers, credentials)


def fetch(handler: Handler, token_request: TokenRequest | None = None) -> IssuedToken:
    async def go() -> IssuedToken:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_token(client, token_request or request())

    return asyncio.run(go())


def answer(status: int = 200, **payload: Any) -> Handler:
    return lambda _: httpx.Response(status, json=payload)


def failure(handler: Handler, token_request: TokenRequest | None = None) -> IdpError:
    with pytest.raises(IdpError) as info:
        fetch(handler, token_request)
    error = info.value
    assert SECRET not in str(error) and SECRET not in error.detail
    return error


# --- the request ------------------------------------------------------------------------------


def test_the_request_is_a_form_post_accepting_json_with_the_extra_headers() -> None:
    seen: list[httpx.Request] = []

    def idp(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"access_token": "tok"})

    fetch(
        idp,
        request(
            form=(("audience", "api"), ("grant_type", "client_credentials"), ("scope", "a b")),
            headers=(("X-Tenant", "acme"), ("X-Trace", "1")),
        ),
    )
    [req] = seen
    assert req.method == "POST"
    assert str(req.url) == ENDPOINT
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.headers["accept"] == "application/json"
    assert req.headers["x-tenant"] == "acme"
    assert req.headers["x-trace"] == "1"
    assert int(req.headers["content-length"]) == len(req.content)
    assert dict(parse_qsl(req.content.decode())) == {
        "audience": "api",
        "grant_type": "client_credentials",
        "scope": "a b",
        "client_id": "gateway",
        "client_secret": SECRET,
    }


def test_an_extra_accept_header_may_replace_the_default() -> None:
    seen: list[httpx.Request] = []

    def idp(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"access_token": "tok"})

    fetch(idp, request(headers=(("Accept", "application/vnd.idp+json"),)))
    assert seen[0].headers.get_list("accept") == ["application/vnd.idp+json"]


def test_basic_authentication_goes_in_the_header() -> None:
    seen: list[httpx.Request] = []

    def idp(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"access_token": "tok"})

    fetch(idp, request(credentials=ClientCredentials("client_secret_basic", "gw", SECRET)))
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert dict(parse_qsl(seen[0].content.decode())) == {"grant_type": "client_credentials"}


# --- success ----------------------------------------------------------------------------------


def test_a_token_with_type_and_lifetime() -> None:
    issued = fetch(answer(access_token="abc", token_type="Bearer", expires_in=3600))
    assert (issued.access_token, issued.token_type, issued.expires_in) == ("abc", "Bearer", 3600.0)
    assert issued.fetched_at > 0


def test_token_type_defaults_to_bearer() -> None:
    assert fetch(answer(access_token="abc")).token_type == "Bearer"


@pytest.mark.parametrize("token_type", ["", None, 5])
def test_an_empty_or_odd_token_type_is_bearer(token_type: Any) -> None:
    assert fetch(answer(access_token="abc", token_type=token_type)).token_type == "Bearer"


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "DPoP", "MAC"])
def test_the_idps_token_type_casing_is_kept(token_type: str) -> None:
    assert fetch(answer(access_token="abc", token_type=token_type)).token_type == token_type


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (3600, 3600.0),
        (90.5, 90.5),
        ("120", 120.0),
        (0, 0.0),  # sent: the caller gives it the shortest TTL
        (-5, None),
        (-0.5, None),
        ("soon", None),
        ("", None),
        (None, None),
        ([60], None),
    ],
)
def test_expires_in(expires_in: Any, expected: float | None) -> None:
    issued = fetch(answer(access_token="abc", expires_in=expires_in))
    assert issued.expires_in == expected


def test_no_expires_in() -> None:
    assert fetch(answer(access_token="abc")).expires_in is None


def test_extra_fields_are_ignored() -> None:
    issued = fetch(answer(access_token="abc", refresh_token="r", scope="a b", id_token="x.y.z"))
    assert issued.access_token == "abc"


# --- failures ---------------------------------------------------------------------------------


def test_a_connect_error_is_network() -> None:
    def idp(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=req)

    error = failure(idp)
    assert (error.kind, error.status) == ("network", None)
    assert "Connection refused" in error.detail


def test_another_transport_error_is_network() -> None:
    def idp(req: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    error = failure(idp)
    assert (error.kind, error.status) == ("network", None)


def test_a_certificate_failure_is_tls() -> None:
    def idp(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate",
            request=req,
        )

    assert failure(idp).kind == "tls"


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
def test_a_timeout_is_timeout(exc: type[httpx.TimeoutException]) -> None:
    def idp(req: httpx.Request) -> httpx.Response:
        raise exc("timed out", request=req)

    error = failure(idp)
    assert (error.kind, error.status) == ("timeout", None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503])
def test_a_status_of_400_or_more_is_status(status: int) -> None:
    error = failure(answer(status, error="invalid_client"))
    assert (error.kind, error.status) == ("status", status)
    assert orjson.loads(error.detail) == {"error": "invalid_client"}


def test_a_status_error_with_a_token_in_the_body_is_still_an_error() -> None:
    error = failure(answer(500, access_token="leaked-token", error="server_error"))
    assert error.kind == "status"
    assert "leaked-token" not in error.detail


@pytest.mark.parametrize(
    "body", [b"<html>Bad Gateway</html>", b"", b"{not json", b"access_token", b"\xff\xfe"]
)
def test_a_body_that_is_not_json_is_not_json(body: bytes) -> None:
    error = failure(lambda _: httpx.Response(200, content=body))
    assert (error.kind, error.status) == ("not_json", 200)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"token_type": "Bearer", "expires_in": 60},
        {"access_token": ""},
        {"access_token": None},
        {"access_token": 12345},
        {"access_token": ["a"]},
        {"access_token": {"value": "a"}},
        ["access_token"],
        "access_token",
        42,
    ],
)
def test_no_usable_access_token_is_no_token(payload: Any) -> None:
    error = failure(lambda _: httpx.Response(200, content=orjson.dumps(payload)))
    assert (error.kind, error.status) == ("no_token", 200)


# --- what the errors say ------------------------------------------------------------------------


def test_the_detail_blanks_every_token_field() -> None:
    payload = {
        "access_token": "",  # empty: no_token, and still blanked
        "refresh_token": "refresh-SECRET",
        "id_token": "id-SECRET",
        "error": "odd",
    }
    error = failure(answer(**payload))
    assert error.kind == "no_token"
    body = orjson.loads(error.detail)
    assert body == {
        "access_token": "[redacted]",
        "refresh_token": "[redacted]",
        "id_token": "[redacted]",
        "error": "odd",
    }


def test_a_status_detail_blanks_token_fields() -> None:
    error = failure(answer(401, access_token="a-SECRET", refresh_token="r-SECRET", error="x"))
    assert "SECRET" not in error.detail
    assert orjson.loads(error.detail)["error"] == "x"


@pytest.mark.parametrize("status", [200, 500])
def test_the_detail_is_cut_at_512_bytes(status: int) -> None:
    assert MAX_BODY_LOGGED == 512
    error = failure(lambda _: httpx.Response(status, content=b"x" * 5000))
    assert len(error.detail.encode()) == 512


def test_a_long_json_detail_is_cut_after_blanking() -> None:
    error = failure(answer(403, error="denied", refresh_token="r-SECRET", pad="y" * 5000))
    assert len(error.detail.encode()) <= 512
    assert "r-SECRET" not in error.detail


def test_a_form_encoded_answer_does_not_leak_its_token() -> None:
    def idp(_: httpx.Request) -> httpx.Response:
        body = b"access_token=tok-LEAKED&token_type=bearer&refresh_token=ref-LEAKED"
        return httpx.Response(
            200, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )

    error = failure(idp)
    assert error.kind == "not_json"
    assert "LEAKED" not in error.detail


def echo(status: int) -> Handler:
    """An IdP whose error names what it was sent (some do, to help debugging)."""

    def idp(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json={"error": "invalid_client", "received": req.content.decode()}
        )

    return idp


def test_the_secret_is_not_in_a_network_error() -> None:
    def idp(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    failure(idp)
    failure(idp, request(credentials=ClientCredentials("client_secret_basic", "gw", SECRET)))


@pytest.mark.parametrize("status", [400, 200])
def test_the_secret_is_not_in_the_detail_when_the_idp_echoes_it(status: int) -> None:
    with pytest.raises(IdpError) as info:
        fetch(echo(status))
    assert info.value.kind == ("status" if status >= 400 else "no_token")
    assert SECRET not in str(info.value)
