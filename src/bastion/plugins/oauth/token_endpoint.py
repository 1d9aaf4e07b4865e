"""The token endpoint (reference 000/001, SPEC §4): client credentials in, an RFC 9068 JWT out.

Higress's behaviour by default: GET reads the query, POST an urlencoded body; the 400 messages
come as plain text in Higress's order. Bastion's additions: HTTP Basic client authentication
(RFC 6749 §2.3.1); RFC 6749 §5.2 JSON errors when the client asks for JSON, authenticates with
Basic, or the config sets `rfc_errors`; 405 for other methods (Higress forwards them upstream
unauthenticated); `scope` limited to the consumer's granted scopes; the failed-secret lockout.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import parse_qsl, unquote_plus

import orjson

from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response, text_response, www_authenticate
from bastion.ops.metrics import Metrics
from bastion.plugins.oauth.lockout import FailureLimit
from bastion.plugins.oauth.schema import Consumer, OAuthRule
from bastion.plugins.oauth.tokens import TokenCodec

MAX_FORM = 16 * 1024  # bytes of a token request body; more is not a token request
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]  # RFC 6749 §5.1
_ALLOW = (b"allow", b"GET, POST")
_FORM = "application/x-www-form-urlencoded"
GRANT = "client_credentials"


class TokenRequestError(Exception):
    """A refused token request: Higress's text message, and the RFC 6749 §5.2 error."""

    def __init__(self, message: str, error: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.status = status


def _invalid_client() -> TokenRequestError:
    return TokenRequestError("invalid client_id or client_secret", "invalid_client", 401)


class TokenEndpoint:
    """Answers token requests for one scope's config."""

    def __init__(
        self, config: OAuthRule, codec: TokenCodec, limit: FailureLimit, metrics: Metrics
    ) -> None:
        self.global_credentials = config.global_credentials
        self.rfc_errors = config.rfc_errors
        self.ttl = config.token_ttl
        self.codec = codec
        self.limit = limit
        self.metrics = metrics

    async def answer(self, ctx: RequestContext) -> Response:
        authorization = ctx.header("authorization") or ""
        rfc = (
            self.rfc_errors
            or "json" in (ctx.header("accept") or "").lower()
            or authorization[:6].lower() == "basic "  # a client that speaks RFC 6749 §2.3.1
        )
        try:
            basic = _basic_credentials(authorization)
            params = await self._params(ctx)
            return await self._issue(ctx, params, basic)
        except TokenRequestError as exc:
            if exc.error in ("invalid_client", "too_many_attempts"):
                self.metrics.auth_outcome("oauth", exc.error)
            return _error(exc, rfc)

    async def _params(self, ctx: RequestContext) -> dict[str, str]:
        if ctx.method == "GET":
            if not ctx.query:
                raise TokenRequestError("Authorize parameters are missing", "invalid_request")
            return _form(ctx.query)
        if ctx.method == "POST":
            if _FORM not in (ctx.header("content-type") or "").lower():
                raise TokenRequestError("Invalid content-type", "invalid_request")
            body = await ctx.read_body(MAX_FORM)
            try:
                return _form(body.decode("utf-8"))
            except UnicodeDecodeError:
                raise TokenRequestError("the body is not UTF-8", "invalid_request") from None
        raise TokenRequestError("method not allowed", "invalid_request", 405)

    async def _issue(
        self, ctx: RequestContext, params: dict[str, str], basic: tuple[str, str] | None
    ) -> Response:
        grant = params.get("grant_type")
        if not grant:
            raise TokenRequestError("grant_type is missing", "invalid_request")
        if grant != GRANT:
            raise TokenRequestError(f"grant_type:{grant} is not support", "unsupported_grant_type")
        if basic is not None and ("client_id" in params or "client_secret" in params):
            # RFC 6749 §2.3: one client authentication method per request
            raise TokenRequestError("use Basic or client_secret, not both", "invalid_request")
        client_id, secret = basic if basic is not None else (
            params.get("client_id"), params.get("client_secret")
        )  # fmt: skip
        if not client_id:
            raise TokenRequestError("client_id is missing", "invalid_client", 401)
        retry = await self.limit.retry_after(client_id, ctx.client_ip)
        if retry is not None:
            raise _Locked(retry)
        consumer = self.codec.by_id.get(client_id)
        if consumer is None:
            await self.limit.failed(client_id, ctx.client_ip)
            raise _invalid_client()
        if not secret:
            raise TokenRequestError("client_secret is missing", "invalid_client", 401)
        if not hmac.compare_digest(secret.encode(), consumer.client_secret.encode()):
            await self.limit.failed(client_id, ctx.client_ip)
            raise _invalid_client()
        scope = _granted(consumer, params.get("scope"))
        assert ctx.route is not None
        aud = "default" if self.global_credentials else ctx.route.name
        token = self.codec.issue(consumer, aud, scope)
        self.metrics.auth_outcome("oauth", "issued")
        payload: dict[str, object] = {
            "token_type": "bearer", "access_token": token, "expires_in": self.ttl,
        }  # fmt: skip
        if scope:
            payload["scope"] = scope
        return Response(200, orjson.dumps(payload), [(b"content-type", b"application/json"),
                                                      *_NO_STORE])  # fmt: skip


class _Locked(TokenRequestError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed client authentications; retry later", "too_many_attempts", 429
        )
        self.retry_after = retry_after


def _form(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in params:  # RFC 6749 §3.2: parameters must not be included more than once
            raise TokenRequestError(f"{name} is repeated", "invalid_request")
        params[name] = value
    return params


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) of `Authorization: Basic`, form-decoded (RFC 6749 §2.3.1)."""
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise TokenRequestError("malformed Basic credentials", "invalid_client", 401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise TokenRequestError("malformed Basic credentials", "invalid_client", 401)
    return unquote_plus(client_id), unquote_plus(secret)


def _granted(consumer: Consumer, requested: str | None) -> str | None:
    if not requested:
        return None
    scopes = requested.split()
    if consumer.scopes is not None:
        extra = [s for s in scopes if s not in consumer.scopes]
        if extra:
            raise TokenRequestError(
                f"scope {' '.join(extra)} is not granted to this client", "invalid_scope"
            )
    return " ".join(dict.fromkeys(scopes))


def _error(exc: TokenRequestError, rfc: bool) -> Response:
    headers: list[tuple[bytes, bytes]] = list(_NO_STORE)
    if exc.status == 405:
        headers.append(_ALLOW)
    if isinstance(exc, _Locked):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if not rfc:
        return text_response(exc.status if exc.status != 401 else 400, exc.message, headers)
    if exc.status == 401:
        headers.append(www_authenticate("Basic", realm="bastion"))  # RFC 6749 §5.2
    body = orjson.dumps({"error": exc.error, "error_description": exc.message})
    return Response(exc.status, body, [(b"content-type", b"application/json"), *headers])
