"""`oauth` plugin: Higress/MSE-compatible client-credentials JWT issuer and verifier (SPEC §4).

The plugin builds what its scopes share (the store's key rings, revocations, lockouts) and binds
one OAuthStep (step.py) to each scope: the instance config, or a rule.
"""

from __future__ import annotations

from bastion.config.model import Model
from bastion.errors import ConfigError
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response, json_response
from bastion.ops.logging import LOG
from bastion.plugins.base import Plugin, PluginDeps, Step
from bastion.plugins.oauth.cache import VerifiedCache
from bastion.plugins.oauth.keys import StoreKeyRing
from bastion.plugins.oauth.lockout import FailureLimit
from bastion.plugins.oauth.revocation import Revocations
from bastion.plugins.oauth.schema import OAuthConfig, OAuthRule, merged, scope_problems
from bastion.plugins.oauth.step import OAuthStep

JWKS_PATH = "/.well-known/jwks.json"  # SPEC §11
_WEAK_SECRET = 14  # bytes: HS256 keys under 112 bits are weak (NIST SP 800-131A)


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
