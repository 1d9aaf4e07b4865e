"""Token requests to an IdP's token endpoint (RFC 6749 §4.4 client credentials, §4.3 password).

The request is a form POST; the answer must be JSON with an `access_token`. Every failure is an
IdpError whose `detail` is safe to log: the IdP's body is kept only after any token-looking field
is blanked, and the request's secrets never appear in it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from bastion.idp.client_auth import ClientCredentials, apply

if TYPE_CHECKING:
    import httpx

MAX_BODY_LOGGED = 512
_SECRET_FIELDS = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "password", "client_assertion"}
)
_SENT_SECRETS = frozenset({"client_secret", "password", "client_assertion"})
_FORM_SECRET = re.compile(
    r"\b(access_token|refresh_token|id_token|client_secret|password|client_assertion)=[^&\s]*"
)
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


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
    # loaded with the first token request: a proxy-only worker stays small
    from bastion.idp.httpx_module import httpx

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
    sent = [v for k, v in form.items() if k in _SENT_SECRETS and v]
    if "Authorization" in headers:
        sent.append(headers["Authorization"].partition(" ")[2])
    if response.status_code >= 400:
        raise IdpError("status", _safe_body(body, sent), response.status_code)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IdpError("not_json", _safe_body(body, sent), response.status_code) from None
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise IdpError("no_token", _safe_body(body, sent), response.status_code)
    token_type = payload.get("token_type")
    if not _HEADER_SAFE.fullmatch(token) or (
        isinstance(token_type, str) and token_type and not _HEADER_SAFE.fullmatch(token_type)
    ):  # it goes into a header upstream: printable ASCII only
        raise IdpError("no_token", "the access_token or token_type is not printable ASCII")
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some IdPs send a string
    return IssuedToken(
        token,
        token_type if isinstance(token_type, str) and token_type else "Bearer",
        # 0 is a number too: the shortest TTL, never default_ttl
        float(expires_in) if isinstance(expires_in, int | float) and expires_in >= 0 else None,
        time.time(),
    )


def _one_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def _safe_body(body: bytes, sent: list[str]) -> str:
    """The IdP's answer for a log line: token and secret fields blanked (as JSON members or as
    form fields), what this request sent as secrets blanked wherever it is echoed, cut short."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = _FORM_SECRET.sub(r"\1=[redacted]", body.decode("utf-8", "replace"))
    else:
        if isinstance(payload, dict):
            payload = {k: "[redacted]" if k in _SECRET_FIELDS else v for k, v in payload.items()}
        text = orjson.dumps(payload).decode()
    for secret in sent:
        text = text.replace(secret, "[redacted]")
    return text[:MAX_BODY_LOGGED]
