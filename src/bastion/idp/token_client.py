"""Token requests to an IdP's token endpoint (RFC 6749 §4.4 client credentials, §4.3 password).

The request is a form POST; the answer must be JSON with an `access_token`. Every failure is an
IdpError whose `detail` is safe to log: the IdP's body is kept only after any token-looking field
is blanked, and the request's secrets never appear in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from bastion.idp.client_auth import ClientCredentials, apply

if TYPE_CHECKING:
    import httpx

MAX_BODY_LOGGED = 512
_SECRET_FIELDS = ("access_token", "refresh_token", "id_token")


class IdpError(Exception):
    """The IdP did not give a token: `kind` is network | timeout | tls | status | not_json |
    no_token; `status` the IdP's HTTP status when it answered."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    token_type: str
    expires_in: float | None
    fetched_at: float  # time.time() when it arrived


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """Everything that goes into one token request, decided at config load."""

    endpoint: str
    form: tuple[tuple[str, str], ...]  # grant_type, scope, audience, extra post args
    headers: tuple[tuple[str, str], ...]
    credentials: ClientCredentials


async def fetch_token(client: httpx.AsyncClient, request: TokenRequest) -> IssuedToken:
    import httpx  # loaded with the first token request: a proxy-only worker stays small

    form = dict(request.form)
    headers = {"Accept": "application/json", **dict(request.headers)}
    apply(request.credentials, form, headers, request.endpoint)
    try:
        response = await client.post(request.endpoint, data=form, headers=headers)
    except httpx.TimeoutException:
        raise IdpError("timeout", "the IdP did not answer in time") from None
    except httpx.ConnectError as exc:
        kind = (
            "tls" if "CERTIFICATE" in str(exc).upper() or "SSL" in str(exc).upper() else "network"
        )
        raise IdpError(kind, _one_line(exc)) from None
    except httpx.HTTPError as exc:
        raise IdpError("network", _one_line(exc)) from None
    body = response.content
    if response.status_code >= 400:
        raise IdpError("status", _safe_body(body), response.status_code)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IdpError("not_json", _safe_body(body), response.status_code) from None
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise IdpError("no_token", _safe_body(body), response.status_code)
    token_type = payload.get("token_type")
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some IdPs send a string
    return IssuedToken(
        token,
        token_type if isinstance(token_type, str) and token_type else "Bearer",
        float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None,
        time.time(),
    )


def _one_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def _safe_body(body: bytes) -> str:
    """The IdP's answer for a log line: token fields blanked, cut short."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:MAX_BODY_LOGGED].decode("utf-8", "replace")
    if isinstance(payload, dict):
        payload = {k: ("[redacted]" if k in _SECRET_FIELDS else v) for k, v in payload.items()}
    return orjson.dumps(payload)[:MAX_BODY_LOGGED].decode("utf-8", "replace")
