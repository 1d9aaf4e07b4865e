"""OAuthStep: one scope of the `oauth` plugin (SPEC §4) serving requests; compiled with the hot
path (gateway/hot_path.py), since a protected request runs it on every call.

Built at config load by OAuthPlugin.bind (handler.py): its consumers' keys, its token endpoint,
its verified-token cache. A request whose path ends with `auth_path` is a token request and is
answered here; any other needs `Bearer <token>` in the auth header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bastion.gateway.clock import Clock
from bastion.gateway.context import RequestContext, lookup_key
from bastion.gateway.responses import Response, text_response, www_authenticate
from bastion.ops.metrics import Count, Metrics
from bastion.plugins.oauth.cache import VerifiedCache, VerifiedToken
from bastion.plugins.oauth.keys import StoreKeyRing
from bastion.plugins.oauth.revocation import Revocations
from bastion.plugins.oauth.schema import OAuthRule
from bastion.plugins.oauth.token_endpoint import TokenEndpoint
from bastion.plugins.oauth.tokens import InvalidToken, TokenCodec
from bastion.plugins.step import LATER, Later, Step

if TYPE_CHECKING:
    from bastion.plugins.oauth.handler import OAuthPlugin

CONSUMER_HEADER: Final = "X-Mse-Consumer"
_CONSUMER_KEY: Final = b"x-mse-consumer"
_INVALID_BODY: Final = b"Invalid Jwt token"  # reference 000 "Error codes"
_DENIED: Final = "Access Denied"
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_CHALLENGES: Final = 1024  # WWW-Authenticate values kept, by (path, token given)


class OAuthStep(Step):
    """One scope of the plugin, ready to serve (see the module docstring)."""

    def __init__(self, plugin: OAuthPlugin, config: OAuthRule) -> None:
        deps = plugin.deps
        self.clock: Clock = deps.clock
        self.metrics: Metrics = deps.metrics
        self.admitted: Count = deps.metrics.auth_count("oauth", "ok")  # counted per request
        self.revocations: Revocations = plugin.revocations
        self.ring: StoreKeyRing | None = (
            plugin.ring_for(config.signing.alg) if config.signing is not None else None
        )
        self.codec = TokenCodec(config, deps.clock, self.ring)
        self.cache = VerifiedCache(config.clock_skew_seconds)
        plugin.caches.append(self.cache)
        self.auth_path: str = config.auth_path
        self.endpoint = TokenEndpoint(config, self.codec, plugin.failures_for(config), deps.metrics)
        self.header_name: str = config.header_name
        self.header_key: bytes = lookup_key(config.header_name)
        alias = config.header_name.replace("-", "_")
        self.alias_key: bytes | None = (
            alias.lower().encode("latin-1") if alias != config.header_name else None
        )
        self.route_bound: bool = not config.global_credentials
        self.allow: frozenset[str] | None = (
            frozenset(config.allow) if config.allow is not None else None
        )
        self.required: frozenset[str] = frozenset(config.required_scopes or ())
        self.keep_token: bool = config.keep_token
        # anything to check beyond the token itself (aud, allow, scopes)
        self.narrowed: bool = self.route_bound or self.allow is not None or bool(self.required)
        self.challenges: dict[tuple[str, bool], tuple[bytes, bytes]] = {}
        # X-Mse-Consumer for each consumer, encoded once (names are checked ASCII at load)
        self.consumer_headers: dict[str, tuple[bytes, bytes]] = {
            c.name: (CONSUMER_HEADER.encode(), c.name.encode()) for c in config.consumers or []
        }

    async def on_request(self, ctx: RequestContext) -> Response | None:
        ring = self.ring
        if ring is not None and ring.stale():
            await ring.refresh()  # StoreUnavailable → 503: fail closed
        if ctx.path.endswith(self.auth_path):
            return await self.endpoint.answer(ctx)
        raw = ctx.lookup.get(self.header_key)
        if raw is None or not _is_bearer(raw):
            return self._unauthorized(ctx, "missing_token", given=raw is not None)
        token = raw[7:].strip().decode("latin-1")
        now = self.clock.time()
        verified = self.cache.get(raw, now)
        cached = verified is not None
        if verified is None:
            try:  # before any store round trip: a forged token costs the store nothing
                verified = self.codec.verify(token)
            except InvalidToken:
                return self._unauthorized(ctx, "invalid_token")
        if self.revocations.stale():
            await self.revocations.refresh()  # StoreUnavailable → 503: fail closed
            cached = cached and self.cache.get(raw, now) is not None  # a change empties it
        if not cached:
            if await self.revocations.is_revoked(verified.jti):
                return self._unauthorized(ctx, "revoked")
            self.cache.put(raw, verified)
        return self._admit(ctx, verified, raw)

    def on_request_now(self, ctx: RequestContext) -> Response | Later | None:
        """Without a task: a token already verified (nothing to poll), and every 401 that needs
        no store (no token, a token that fails verification). The rest is on_request's."""
        raw = ctx.lookup.get(self.header_key)
        if ctx.path.endswith(self.auth_path):
            return LATER
        if raw is None or not _is_bearer(raw):
            return self._unauthorized(ctx, "missing_token", given=raw is not None)
        moment = self.clock.monotonic()
        ring = self.ring
        if ring is not None and moment >= ring.fresh_until:
            return LATER  # the keys to verify with may have changed
        verified = self.cache.get(raw, self.clock.time())
        if verified is not None:
            if moment < self.revocations.fresh_until:
                return self._admit(ctx, verified, raw)
            # verified before: only the revocation list is due a read (on_request), and every
            # request of the poll's window would verify the signature again for nothing
            return LATER
        try:
            self.codec.verify(raw[7:].strip().decode("latin-1"))
        except InvalidToken:
            return self._unauthorized(ctx, "invalid_token")
        return LATER  # valid: its revocation is looked up in the store

    def _admit(self, ctx: RequestContext, verified: VerifiedToken, raw: bytes) -> Response | None:
        """A verified token: 403 unless this scope allows it, else its identity goes upstream."""
        if self.narrowed:
            denied = self._denied(ctx, verified)
            if denied is not None:
                return denied
        self.admitted.n += 1
        consumer = verified.consumer
        ctx.consumer = consumer
        ctx.set_upstream_pair(_CONSUMER_KEY, self.consumer_headers[consumer])
        # only the verified token goes upstream: a repeated header, or its `_` spelling (which
        # CGI-style servers read as the same name), could carry an unverified one
        if self.keep_token:
            if ctx.header_count(self.header_key) > 1:
                ctx.set_upstream_header(self.header_name, raw.decode("latin-1"))
        else:
            ctx.remove_upstream_key(self.header_key)
        if self.alias_key is not None:
            ctx.remove_upstream_key(self.alias_key)
        return None

    def _denied(self, ctx: RequestContext, verified: VerifiedToken) -> Response | None:
        route = ctx.route
        assert route is not None
        if (self.route_bound and verified.aud != route.name) or (
            self.allow is not None and verified.consumer not in self.allow
        ):
            self.metrics.auth_outcome("oauth", "denied")
            return text_response(403, _DENIED)
        if self.required and not self.required <= verified.scopes:
            self.metrics.auth_outcome("oauth", "insufficient_scope")
            challenge = www_authenticate(
                "Bearer", error="insufficient_scope", scope=" ".join(sorted(self.required))
            )  # RFC 6750 §3.1
            return text_response(403, _DENIED, [challenge])
        return None

    def _unauthorized(self, ctx: RequestContext, outcome: str, *, given: bool = True) -> Response:
        self.metrics.auth_outcome("oauth", outcome)
        realm = ctx.path[:256]  # Higress: the request URI; the query may hold secrets
        challenge = self.challenges.get((realm, given))
        if challenge is None:  # quoting it is most of a 401's cost: kept for recent paths
            params: dict[str, str] = {"realm": realm}
            if given:
                params["error"] = "invalid_token"  # RFC 6750 §3.1: only when a token was given
            challenge = www_authenticate("Bearer", **params)
            if len(self.challenges) >= _CHALLENGES:
                self.challenges.clear()
            self.challenges[(realm, given)] = challenge
        return Response(401, _INVALID_BODY, [_TEXT, challenge])


def _is_bearer(value: bytes) -> bool:
    """RFC 6750 §2.1, the scheme case-insensitive (RFC 9110 §11.1): usual spelling first."""
    # (startswith is a C call once compiled; a slice is a new bytes object)
    return value.startswith(b"Bearer ") or value[:7].lower() == b"bearer "
