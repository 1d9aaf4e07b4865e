"""`oauth` plugin: Higress/MSE-compatible client-credentials JWT issuer and verifier (SPEC §4).

Each scope (instance config, or a rule) gets one OAuthStep built at config load: its consumers'
keys, its token endpoint, its verified-token cache. A request whose path ends with `auth_path` is
a token request and is answered here; any other needs `Bearer <token>` in the auth header.
"""

from __future__ import annotations

from bastion.config.model import Model
from bastion.errors import ConfigError
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response, json_response, text_response, www_authenticate
from bastion.ops.logging import LOG
from bastion.plugins.base import LATER, Later, Plugin, PluginDeps, Step
from bastion.plugins.oauth.cache import VerifiedCache
from bastion.plugins.oauth.keys import StoreKeyRing
from bastion.plugins.oauth.lockout import FailureLimit
from bastion.plugins.oauth.revocation import Revocations
from bastion.plugins.oauth.schema import OAuthConfig, OAuthRule, merged, scope_problems
from bastion.plugins.oauth.token_endpoint import TokenEndpoint
from bastion.plugins.oauth.tokens import InvalidToken, TokenCodec, VerifiedToken

CONSUMER_HEADER = "X-Mse-Consumer"
JWKS_PATH = "/.well-known/jwks.json"  # SPEC §11
_CONSUMER_KEY = CONSUMER_HEADER.lower().encode()
_INVALID = "Invalid Jwt token"  # reference 000 "Error codes"
_DENIED = "Access Denied"
_INVALID_BODY = _INVALID.encode()
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_CHALLENGES = 1024  # WWW-Authenticate values kept, by (path, token given)
_WEAK_SECRET = 14  # bytes: HS256 keys under 112 bits are weak (NIST SP 800-131A)


class OAuthStep(Step):
    """One scope of the plugin, ready to serve (see the module docstring)."""

    def __init__(self, plugin: OAuthPlugin, config: OAuthRule) -> None:
        deps = plugin.deps
        self.clock = deps.clock
        self.metrics = deps.metrics
        self.revocations = plugin.revocations
        self.ring = plugin.ring_for(config.signing.alg) if config.signing is not None else None
        self.codec = TokenCodec(config, deps.clock, self.ring)
        self.cache = VerifiedCache(config.clock_skew_seconds)
        plugin.caches.append(self.cache)
        self.auth_path = config.auth_path
        self.endpoint = TokenEndpoint(config, self.codec, plugin.failures_for(config), deps.metrics)
        self.header_name = config.header_name
        self.header_key = config.header_name.lower().encode("latin-1")
        alias = config.header_name.replace("-", "_")
        self.header_alias = alias if alias != config.header_name else None
        self.route_bound = not config.global_credentials
        self.allow = frozenset(config.allow) if config.allow is not None else None
        self.required = frozenset(config.required_scopes or ())
        self.keep_token = config.keep_token
        # anything to check beyond the token itself (aud, allow, scopes)
        self.narrowed = self.route_bound or self.allow is not None or bool(self.required)
        self.challenges: dict[tuple[str, bool], tuple[bytes, bytes]] = {}
        # X-Mse-Consumer for each consumer, encoded once (names are checked ASCII at load)
        self.consumer_headers = {
            c.name: (CONSUMER_HEADER.encode(), c.name.encode()) for c in config.consumers or []
        }

    async def on_request(self, ctx: RequestContext) -> Response | None:
        ring = self.ring
        if ring is not None and ring.stale():
            await ring.refresh()  # StoreUnavailable → 503: fail closed
        if ctx.path.endswith(self.auth_path):
            return await self.endpoint.answer(ctx)
        raw = ctx.lookup.get(self.header_key)
        if raw is None or raw[:7].lower() != b"bearer ":
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
        if raw is None or raw[:7].lower() != b"bearer ":
            return self._unauthorized(ctx, "missing_token", given=raw is not None)
        moment = self.clock.monotonic()
        if self.ring is not None and moment >= self.ring.fresh_until:
            return LATER  # the keys to verify with may have changed
        if moment < self.revocations.fresh_until:
            verified = self.cache.get(raw, self.clock.time())
            if verified is not None:
                return self._admit(ctx, verified, raw)
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
        self.metrics.auth_outcome("oauth", "ok")
        ctx.consumer = verified.consumer
        ctx.set_upstream_pair(_CONSUMER_KEY, self.consumer_headers[verified.consumer])
        # only the verified token goes upstream: a repeated header, or its `_` spelling (which
        # CGI-style servers read as the same name), could carry an unverified one
        if self.keep_token:
            if ctx.header_count(self.header_key) > 1:
                ctx.set_upstream_header(self.header_name, raw.decode("latin-1"))
        else:
            ctx.remove_upstream_header(self.header_name)
        if self.header_alias is not None:
            ctx.remove_upstream_header(self.header_alias)
        return None

    def _denied(self, ctx: RequestContext, verified: VerifiedToken) -> Response | None:
        assert ctx.route is not None
        if (self.route_bound and verified.aud != ctx.route.name) or (
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


class JwksStep(Step):
    """`GET /.well-known/jwks.json`: the public keys of every ring, so upstreams verify tokens
    themselves (RFC 7517 §5); retired keys stay listed while their tokens may live."""

    def __init__(self, rings: dict[str, StoreKeyRing]) -> None:
        self.rings = rings

    async def on_request(self, ctx: RequestContext) -> Response | None:
        if ctx.method not in ("GET", "HEAD"):
            return Response(405, b"", [(b"allow", b"GET, HEAD")])
        keys = []
        for ring in self.rings.values():
            if ring.stale():
                await ring.refresh()
            keys.extend(ring.public_jwks())
        # short-lived: a rotated key signs within a second (verifiers refetch on an unknown kid)
        return json_response(200, {"keys": keys}, [(b"cache-control", b"public, max-age=5")])


class OAuthPlugin(Plugin):
    NAME = "oauth"
    PRIORITY = 350  # Higress: authentication phase, priority 350
    Config = OAuthConfig
    Rule = OAuthRule
    GLOBAL_AUTH = True
    USES_STORE = True  # lockouts and revocations are shared by every node

    def __init__(self, config: Model, deps: PluginDeps) -> None:
        super().__init__(config, deps)
        assert isinstance(config, OAuthConfig)
        self.instance: OAuthConfig = config
        self.caches: list[VerifiedCache] = []
        if deps.store is None:
            raise ConfigError([("", "the oauth plugin needs the store")])
        self.store = deps.store
        self.revocations = Revocations(deps.store, deps.clock, self._drop_caches)
        self._limits: dict[tuple[int, float], FailureLimit] = {}
        self.rings: dict[str, StoreKeyRing] = {}
        _warn_weak_secrets(config)

    @classmethod
    def check_rule(
        cls, instance: Model, rule: Model | None, *, instance_applies: bool
    ) -> list[tuple[str, str]]:
        assert isinstance(instance, OAuthConfig)
        if rule is None:
            problems = scope_problems(instance, merged(instance, None))
            if not instance_applies:
                problems = [p for p in problems if p[0] != "consumers"]
            return problems
        assert isinstance(rule, OAuthRule)
        return scope_problems(rule, merged(instance, rule))

    def bind(self, rule: Model) -> Step | None:
        if isinstance(rule, OAuthRule):
            if "consumers" in rule.model_fields_set:
                _warn_weak_secrets(rule)
            return OAuthStep(self, merged(self.instance, rule))
        return OAuthStep(self, merged(self.instance, None))

    def endpoints(self) -> dict[str, Step]:
        # bind() has run for every scope by now: the rings are known
        return {JWKS_PATH: JwksStep(self.rings)} if self.rings else {}

    def ring_for(self, alg: str) -> StoreKeyRing:
        if alg not in self.rings:
            self.rings[alg] = StoreKeyRing(self.store, alg, self.deps.clock, self._drop_caches)
        return self.rings[alg]

    def failures_for(self, config: OAuthRule) -> FailureLimit:
        key = (config.lockout.max_failures, config.lockout.window)
        if key not in self._limits:
            self._limits[key] = FailureLimit(self.store, config.lockout, self.deps.clock)
        return self._limits[key]

    def _drop_caches(self) -> None:
        for cache in self.caches:
            cache.clear()


def _warn_weak_secrets(config: OAuthConfig | OAuthRule) -> None:
    if config.signing is not None:
        return  # the gateway's own keys sign: secrets are only compared
    for consumer in config.consumers or []:
        if len(consumer.client_secret.encode()) < _WEAK_SECRET:
            LOG.warning(
                "oauth: a client_secret shorter than 14 bytes is a weak HS256 key",
                consumer=consumer.name,
            )
