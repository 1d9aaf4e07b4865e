"""A small OAuth 2.0 token endpoint (RFC 6749) that tests control: the upstream-oauth plugin's IdP.

    python tests/e2e/idp_app.py --port N [--tls-cert FILE --tls-key FILE]

Listens on 127.0.0.1 with Starlette on uvicorn (HTTPS when a certificate is given). Endpoints:

- `POST /token` (`application/x-www-form-urlencoded`): `grant_type` `client_credentials` or
  `password` (`username`/`password` checked against the configured users). Client authentication,
  each client allowing the method(s) it is registered with:
  `client_secret_post` (client_id + client_secret in the form), `client_secret_basic`
  (`Authorization: Basic`, id and secret form-encoded first, RFC 6749 §2.3.1), `client_secret_jwt`
  (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
  `client_assertion`, HS256/HS512 signed with the client secret), `private_key_jwt` (the same with
  RS256/PS256/ES256/EdDSA, verified with the client's registered public JWK; RFC 7523) and `none`
  (client_id only). Assertions need iss = sub = client_id, aud = this token endpoint's URL (or a
  list holding it), exp in the future and a jti not seen before.
  Errors are RFC 6749 §5.2 JSON: 400 invalid_request / unsupported_grant_type / invalid_grant,
  401 invalid_client. Success: `{"access_token": "tok-<n>-<random>", "token_type", "expires_in",
  "scope"}` (expires_in left out when set to null, scope only when one was requested).
- `POST /control` (JSON): change any of `expires_in` (int or null), `token_type`, `delay` (seconds
  slept before answering /token), `fail` (null; `"status:NNN"` answers NNN with a JSON error;
  `"not_json"` answers 200 text/html; `"no_token"` answers 200 JSON without access_token; `"close"`
  closes the connection without answering), `clients` (merged: client_id -> `{"secret"?,
  "public_jwk"?, "auth_method": str or [str, ...]}`, or null to remove one) and `users` (merged:
  username -> password, or null). Answers the current settings. `GET /control` answers them too.
- `GET /stats`: `{"token_requests": n, "tokens_issued": n, "requests": [...]}`: the last 100
  requests to /token, each `{"headers": {name: value}, "form": {name: value}, "time": unix time,
  "client_id", "auth_method", "status"}` (status null when the connection was closed).
  Every request to /token counts, whatever its outcome.
- `POST /reset`: counters, recorded requests, seen jtis and settings back to the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import copy
import hmac
import itertools
import secrets
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import jwt
import uvicorn
from jwt.warnings import InsecureKeyLengthWarning
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET_JWT_ALGS = ["HS256", "HS512"]
PRIVATE_KEY_JWT_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
AUTH_METHODS = {
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
}

# The secrets of JWT clients are 64 bytes or more, so HS512 keys are not "short" for PyJWT.
DEFAULT_CLIENTS: dict[str, dict[str, Any]] = {
    "post-client": {"secret": "post-secret", "auth_method": "client_secret_post"},
    "basic-client": {"secret": "basic secret:with+odd&chars", "auth_method": "client_secret_basic"},
    "jwt-client": {
        "secret": "jwt-secret-" + "0123456789abcdef" * 4,
        "auth_method": "client_secret_jwt",
    },
    "public-client": {"auth_method": "none"},
}
DEFAULT_USERS: dict[str, str] = {"alice": "alice-password"}
DEFAULT_SETTINGS: dict[str, Any] = {
    "expires_in": 3600,
    "token_type": "Bearer",
    "delay": 0.0,
    "fail": None,
    "clients": DEFAULT_CLIENTS,
    "users": DEFAULT_USERS,
}
KEEP_REQUESTS = 100


@dataclass
class State:
    settings: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SETTINGS))
    token_requests: int = 0
    tokens_issued: int = 0
    requests: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=KEEP_REQUESTS)
    )
    seen_jtis: set[tuple[str, str]] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


STATE = State()


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, basic: bool = False) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.basic = basic

    def response(self) -> Response:
        headers = {"Cache-Control": "no-store"}
        if self.status == 401 and self.basic:
            headers["WWW-Authenticate"] = 'Basic realm="idp"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


def _invalid_client(description: str, basic: bool = False) -> OAuthError:
    return OAuthError(401, "invalid_client", description, basic)


def _methods(client: dict[str, Any]) -> set[str]:
    method = client.get("auth_method", "client_secret_post")
    return {method} if isinstance(method, str) else set(method)


def _expected_audiences(request: Request) -> list[str]:
    scheme = request.url.scheme
    port = request.url.port or (443 if scheme == "https" else 80)
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}", request.headers.get("host", "")}
    return [f"{scheme}://{host}/token" for host in hosts if host]


def _verify_assertion(
    request: Request, form: dict[str, str], clients: dict[str, Any]
) -> tuple[str, str]:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _invalid_client(f"malformed client_assertion: {exc}") from None
    client_id = unverified.get("sub") or unverified.get("iss")
    if not isinstance(client_id, str):
        raise _invalid_client("client_assertion has no sub")
    if "client_id" in form and form["client_id"] != client_id:
        raise _invalid_client("client_id does not match the assertion's sub")
    alg = header.get("alg")
    method = "client_secret_jwt" if alg in SECRET_JWT_ALGS else "private_key_jwt"
    client = clients.get(client_id)
    if client is None:
        raise _invalid_client(f"unknown client {client_id!r}")
    if method not in _methods(client):
        raise _invalid_client(f"client {client_id!r} may not use {method}")
    key: Any
    if method == "client_secret_jwt":
        if not client.get("secret"):
            raise _invalid_client(f"client {client_id!r} has no secret")
        key, algorithms = client["secret"].encode(), SECRET_JWT_ALGS
    else:
        if alg not in PRIVATE_KEY_JWT_ALGS:
            raise _invalid_client(f"unsupported assertion alg {alg!r}")
        jwk = client.get("public_jwk")
        if not jwk:
            raise _invalid_client(f"client {client_id!r} has no public_jwk")
        if jwk.get("kid") and header.get("kid") and jwk["kid"] != header["kid"]:
            raise _invalid_client(f"unknown kid {header['kid']!r}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError as exc:
            raise _invalid_client(f"the registered public_jwk does not fit {alg}: {exc}") from None
        algorithms = PRIVATE_KEY_JWT_ALGS
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=algorithms,
            audience=_expected_audiences(request),
            issuer=client_id,
            options={"require": ["exp", "iss", "sub", "aud", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise _invalid_client(f"client_assertion rejected: {type(exc).__name__}: {exc}") from None
    if claims["sub"] != client_id:
        raise _invalid_client("sub must equal iss (the client_id)")
    if (client_id, claims["jti"]) in STATE.seen_jtis:
        raise _invalid_client("client_assertion jti was used before")
    STATE.seen_jtis.add((client_id, claims["jti"]))
    return client_id, method


def authenticate(request: Request, form: dict[str, str], record: dict[str, Any]) -> tuple[str, str]:
    """The authenticated (client_id, auth_method), or an OAuthError."""
    clients: dict[str, Any] = STATE.settings["clients"]
    authorization = request.headers.get("authorization", "")
    basic = authorization[:6].lower() == "basic "
    client_id: str
    secret: str | None = None
    if basic:
        if "client_secret" in form or "client_assertion" in form:
            raise OAuthError(400, "invalid_request", "more than one client authentication method")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            raw_id, raw_secret = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _invalid_client("malformed Basic credentials", basic=True) from None
        client_id, secret, method = (
            unquote_plus(raw_id),
            unquote_plus(raw_secret),
            "client_secret_basic",
        )
        if "client_id" in form and form["client_id"] != client_id:
            raise _invalid_client("client_id differs from the Basic user", basic=True)
    elif "client_assertion" in form:
        if "client_secret" in form:
            raise OAuthError(400, "invalid_request", "more than one client authentication method")
        client_id, method = _verify_assertion(request, form, clients)
        record.update(client_id=client_id, auth_method=method)
        return client_id, method
    elif "client_secret" in form:
        if "client_id" not in form:
            raise _invalid_client("client_secret without client_id")
        client_id, secret, method = form["client_id"], form["client_secret"], "client_secret_post"
    elif "client_id" in form:
        client_id, method = form["client_id"], "none"
    else:
        raise _invalid_client("no client authentication")
    record.update(client_id=client_id, auth_method=method)
    client = clients.get(client_id)
    if client is None:
        raise _invalid_client(f"unknown client {client_id!r}", basic)
    if method not in _methods(client):
        raise _invalid_client(f"client {client_id!r} may not use {method}", basic)
    if secret is not None and not hmac.compare_digest(
        secret.encode(), str(client.get("secret") or "").encode()
    ):
        raise _invalid_client("wrong client secret", basic)
    return client_id, method


def issue(form: dict[str, str]) -> Response:
    settings = STATE.settings
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "grant_type is missing")
    if grant_type == "password":
        username, password = form.get("username"), form.get("password")
        if username is None or password is None:
            raise OAuthError(400, "invalid_request", "username and password are required")
        known = settings["users"].get(username)
        if known is None or not hmac.compare_digest(known.encode(), password.encode()):
            raise OAuthError(400, "invalid_grant", "wrong username or password")
    elif grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r}")
    STATE.tokens_issued += 1
    body: dict[str, Any] = {
        "access_token": f"tok-{next(STATE.counter)}-{secrets.token_hex(8)}",
        "token_type": settings["token_type"],
    }
    if settings["expires_in"] is not None:
        body["expires_in"] = settings["expires_in"]
    if "scope" in form:
        body["scope"] = form["scope"]
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def _close_connection(request: Request) -> Response:
    transport = request.scope.get("idp.transport")
    if transport is not None:
        transport.close()
    await asyncio.sleep(0.05)  # uvicorn sees the connection lost and drops the response below
    return Response(b"", status_code=500)


async def token(request: Request) -> Response:
    STATE.token_requests += 1
    body = await request.body()
    form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    record: dict[str, Any] = {
        "headers": {k: v for k, v in request.headers.items()},
        "form": form,
        "time": time.time(),
        "client_id": None,
        "auth_method": None,
        "status": None,
    }
    STATE.requests.append(record)
    settings = STATE.settings
    if settings["delay"]:
        await asyncio.sleep(float(settings["delay"]))
    fail = settings["fail"]
    if fail == "close":
        return await _close_connection(request)
    response: Response
    if fail == "not_json":
        response = Response(b"<html><body>Bad gateway</body></html>", media_type="text/html")
    elif fail == "no_token":
        response = JSONResponse({"token_type": settings["token_type"], "expires_in": 60})
    elif isinstance(fail, str) and fail.startswith("status:"):
        code = int(fail.split(":", 1)[1])
        response = JSONResponse(
            {"error": "server_error", "error_description": f"failure {code} set by /control"},
            status_code=code,
        )
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if request.method != "POST":
                raise OAuthError(405, "invalid_request", "the token endpoint takes POST")
            if content_type != "application/x-www-form-urlencoded":
                raise OAuthError(400, "invalid_request", f"content-type {content_type!r}")
            authenticate(request, form, record)
            response = issue(form)
        except OAuthError as exc:
            response = exc.response()
    record["status"] = response.status_code
    return response


def _check_settings(changes: dict[str, Any]) -> None:
    unknown = set(changes) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    if "expires_in" in changes and not (
        changes["expires_in"] is None or isinstance(changes["expires_in"], int)
    ):
        raise ValueError("expires_in must be an integer or null")
    if "delay" in changes and not isinstance(changes["delay"], int | float):
        raise ValueError("delay must be a number of seconds")
    fail = changes.get("fail")
    if fail is not None and fail not in ("not_json", "no_token", "close"):
        if not (isinstance(fail, str) and fail.startswith("status:") and fail[7:].isdigit()):
            raise ValueError("fail: null, 'status:NNN', 'not_json', 'no_token' or 'close'")
        if not 200 <= int(fail[7:]) <= 599:
            raise ValueError("fail status must be 200..599")
    for name in ("clients", "users"):
        if not isinstance(changes.get(name) or {}, dict):
            raise ValueError(f"{name} must be an object")
    for client_id, client in (changes.get("clients") or {}).items():
        if client is None:
            continue
        if not isinstance(client, dict):
            raise ValueError(f"client {client_id}: an object or null is expected")
        methods = _methods(client)
        if not methods <= AUTH_METHODS:
            raise ValueError(f"client {client_id}: unknown auth_method {sorted(methods)}")


async def control(request: Request) -> Response:
    if request.method == "POST":
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("a JSON object is expected")
            _check_settings(changes)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        for name, value in changes.items():
            if name in ("clients", "users"):
                merged = STATE.settings[name]
                for key, entry in (value or {}).items():
                    if entry is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = entry
            else:
                STATE.settings[name] = value
    return JSONResponse(STATE.settings)


async def stats(request: Request) -> Response:
    return JSONResponse(
        {
            "token_requests": STATE.token_requests,
            "tokens_issued": STATE.tokens_issued,
            "requests": list(STATE.requests),
        }
    )


async def reset(request: Request) -> Response:
    global STATE
    STATE = State()
    return JSONResponse({"reset": True})


app = Starlette(
    routes=[
        Route("/token", token, methods=["POST", "GET", "PUT"]),
        Route("/control", control, methods=["GET", "POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
    ]
)


class TransportExposingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that puts the connection's transport in the ASGI scope, so
    `fail: close` can close the connection without an answer."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["idp.transport"] = self.transport  # type: ignore[typeddict-unknown-key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    warnings.simplefilter("ignore", InsecureKeyLengthWarning)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    config = uvicorn.Config(
        app,
        http=TransportExposingProtocol,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=120,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
