"""`upstream-oauth` plugin: fetch a token from the upstream's IdP and send it upstream (SPEC §7).

Kong's Upstream OAuth (reference 004, peers-behaviour §3): the token goes upstream as
`<token_type> <access_token>` in the configured header; an IdP failure answers the configured
status and templated body; an upstream status in the purge list drops the token. Beyond Kong:
single-flight and refresh ahead (cache.py), one retry of a safe request after a purge, TLS
verification on by default, private_key_jwt, purges from the CLI and admin API (purge.py).
"""

from __future__ import annotations

import json
import ssl
from typing import TYPE_CHECKING

from bastion.config.model import Model
from bastion.errors import ConfigError
from bastion.gateway.context import Header, RequestContext, ResponseHead, upstream_pair
from bastion.gateway.responses import Response
from bastion.idp.client_auth import ClientCredentials, load_private_key
from bastion.idp.token_client import IdpError, TokenRequest
from bastion.ops.logging import LOG
from bastion.plugins.base import LATER, Later, Plugin, PluginDeps, Step
from bastion.plugins.upstream_oauth.cache import TokenSource, cache_key
from bastion.plugins.upstream_oauth.purge import PurgeWatch, publish_purge
from bastion.plugins.upstream_oauth.schema import (
    ClientSettings,
    UpstreamOAuthConfig,
    UpstreamOAuthInstance,
)
from bastion.store.base import Store, StoreUnavailable

if TYPE_CHECKING:
    import httpx


def render_error(config: UpstreamOAuthConfig) -> Response:
    """The answer to a client when the IdP fails: Kong's template, values JSON-escaped."""
    behavior = config.behavior
    status = behavior.idp_error_response_status_code
    body = behavior.idp_error_response_body_template
    for name, value in (("status", str(status)), ("message", behavior.idp_error_response_message)):
        body = body.replace("{{" + name + "}}", json.dumps(value)[1:-1])
    content_type = behavior.idp_error_response_content_type.encode("latin-1")
    return Response(status, body.encode(), [(b"content-type", content_type)])


class UpstreamOAuthStep(Step):
    def __init__(self, plugin: UpstreamOAuthPlugin, config: UpstreamOAuthConfig) -> None:
        self.plugin = plugin
        self.source = plugin.source_for(config)
        self.header = config.behavior.upstream_access_token_header_name
        self.purge_on = frozenset(config.behavior.purge_token_on_upstream_status_codes)
        self.error = render_error(config)
        # the last token value sent, with its checked and encoded header (set_upstream_pair)
        self.sent: tuple[str, bytes, Header] | None = None

    async def on_request(self, ctx: RequestContext) -> Response | None:
        watch = self.plugin.purges
        if watch is not None and watch.stale():
            try:
                await watch.refresh()
            except StoreUnavailable:
                watch.fresh_until = watch.clock.monotonic() + 1.0  # purges wait; tokens do not
        try:
            value = await self.source.header_value()
        except IdpError as exc:
            LOG.error(
                "upstream-oauth: no token from the IdP", request_id=ctx.request_id,
                kind=exc.kind, status=exc.status, detail=exc.detail,
            )  # fmt: skip
            return Response(self.error.status, self.error.body, list(self.error.headers))
        self._send(ctx, value)
        return None

    def on_request_now(self, ctx: RequestContext) -> Response | Later | None:
        """The common case without a task: a live token in this process's memory."""
        watch = self.plugin.purges
        if watch is not None and watch.stale():
            return LATER
        value = self.source.cached_value()
        if value is None:
            return LATER
        self._send(ctx, value)
        return None

    def _send(self, ctx: RequestContext, value: str) -> None:
        sent = self.sent
        if sent is None or sent[0] is not value:  # a new token: its header is made once
            low, pair = upstream_pair(self.header, value)
            sent = self.sent = (value, low, pair)
        ctx.set_upstream_pair(sent[1], sent[2])

    def response_statuses(self) -> frozenset[int] | None:
        return self.purge_on  # a 200 skips the response pass

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        if head.status in self.purge_on:
            self.source.purge()
            self.plugin.spawn_purge_shared(self.source)
            self.plugin.deps.metrics.cache_event("purged")
            ctx.retry_upstream()  # once, with a fresh token, when the request is safe to resend


class UpstreamOAuthPlugin(Plugin):
    NAME = "upstream-oauth"
    PRIORITY = 760  # Kong's
    Config = UpstreamOAuthInstance
    Rule = UpstreamOAuthConfig
    USES_STORE = True  # purges reach every worker and node through it; the redis strategy

    def __init__(self, config: Model, deps: PluginDeps) -> None:
        super().__init__(config, deps)
        self.sources: dict[tuple[object, ...], TokenSource] = {}
        self.clients: dict[ClientSettings, httpx.AsyncClient] = {}
        self.stores: dict[str, Store] = {}  # cache.redis URLs of their own
        self.tasks: set[object] = set()
        self.purges = (
            PurgeWatch(deps.store, deps.clock, self.drop) if deps.store is not None else None
        )

    @classmethod
    def check_rule(
        cls, instance: Model, rule: Model | None, *, instance_applies: bool
    ) -> list[tuple[str, str]]:
        assert isinstance(instance, UpstreamOAuthConfig)
        section = instance if rule is None else rule
        assert isinstance(section, UpstreamOAuthConfig)
        if rule is None and instance_applies and instance.oauth is None:
            return [("oauth", "required where the instance config applies (or use _rules_)")]
        problems: list[tuple[str, str]] = []
        client = section.client
        if client.auth_method == "private_key_jwt" and client.private_key:
            try:
                load_private_key(client.private_key, client.private_key_jwt_alg)
            except ValueError as exc:
                problems.append(("client.private_key", str(exc)))
        if client.ssl_ca_file:
            try:
                ssl.create_default_context(cafile=client.ssl_ca_file)
            except (OSError, ssl.SSLError) as exc:
                problems.append(("client.ssl_ca_file", f"cannot load: {exc}"))
        return problems

    def bind(self, rule: Model) -> Step | None:
        assert isinstance(rule, UpstreamOAuthConfig)
        if rule.oauth is None:
            return None  # an instance config that only carries defaults for no one
        return UpstreamOAuthStep(self, rule)

    def source_for(self, config: UpstreamOAuthConfig) -> TokenSource:
        """One source per cache key and the settings of how it is fetched and kept: identical
        settings share one token (and the store copy, keyed by the cache key alone)."""
        assert config.oauth is not None
        key = cache_key(config.oauth)
        shared_url = None
        if config.cache.strategy == "redis":
            shared_url = config.cache.redis or "@gateway"
        identity = (
            key,
            shared_url,
            config.client,
            config.cache.eagerly_expire,
            config.cache.default_ttl,
        )
        found = self.sources.get(identity)
        if found is not None:
            return found
        oauth, client = config.oauth, config.client
        form: list[tuple[str, str]] = [("grant_type", oauth.grant_type)]
        if oauth.grant_type == "password":
            form += [("username", oauth.username or ""), ("password", oauth.password or "")]
        if oauth.scopes:
            form.append(("scope", " ".join(oauth.scopes)))
        if oauth.audience:
            form.append(("audience", " ".join(oauth.audience)))
        # Kong applies the extra post args first, so the standard fields win
        standard = {name for name, _ in form}
        form = [(k, v) for k, v in oauth.token_post_args.items() if k not in standard] + form
        request = TokenRequest(
            oauth.token_endpoint, tuple(form), tuple(oauth.token_headers.items()),
            self._credentials(config),
        )  # fmt: skip
        source = TokenSource(
            key, request, self._http(client),
            eagerly_expire=config.cache.eagerly_expire, default_ttl=config.cache.default_ttl,
            shared=self._shared_store(config), lock_lease=client.timeout / 1000 + 2.0,
            clock=self.deps.clock, metrics=self.deps.metrics,
        )  # fmt: skip
        self.sources[identity] = source
        return source

    def _credentials(self, config: UpstreamOAuthConfig) -> ClientCredentials:
        client, oauth = config.client, config.oauth
        assert oauth is not None
        if client.auth_method == "private_key_jwt":
            try:
                key = load_private_key(client.private_key or "", client.private_key_jwt_alg)
            except ValueError as exc:
                raise ConfigError([("client.private_key", str(exc))]) from None
            return ClientCredentials(
                "private_key_jwt", oauth.client_id, None, client.private_key_jwt_alg, key,
                client.kid,
            )  # fmt: skip
        return ClientCredentials(
            client.auth_method, oauth.client_id, oauth.client_secret, client.client_secret_jwt_alg
        )

    def _http(self, client: ClientSettings) -> httpx.AsyncClient:
        from bastion.idp.httpx_module import httpx  # loaded only where the plugin is configured

        found = self.clients.get(client)
        if found is not None:
            return found
        verify: ssl.SSLContext | bool = client.ssl_verify
        if client.ssl_verify and client.ssl_ca_file:
            try:
                verify = ssl.create_default_context(cafile=client.ssl_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError([("client.ssl_ca_file", f"cannot load: {exc}")]) from None
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
        for scheme, url, auth in (
            ("http://", client.http_proxy, client.http_proxy_authorization),
            ("https://", client.https_proxy, client.https_proxy_authorization),
        ):
            if url:
                headers = {"Proxy-Authorization": auth} if auth else None
                proxy = httpx.Proxy(url, headers=headers)
                mounts[scheme] = httpx.AsyncHTTPTransport(proxy=proxy, verify=verify)
        for host in (client.no_proxy or "").split(","):
            if host.strip():
                mounts[f"all://{host.strip()}"] = None
        http = httpx.AsyncClient(
            verify=verify, timeout=client.timeout / 1000, mounts=mounts or None, trust_env=False
        )
        self.clients[client] = http
        return http

    def _shared_store(self, config: UpstreamOAuthConfig) -> Store | None:
        if config.cache.strategy != "redis":
            return None
        url = config.cache.redis
        if url is None:
            store = self.deps.store
            if store is None or store.backend != "redis":
                raise ConfigError([(
                    "cache.redis",
                    "the redis strategy needs a Redis URL here, or a Redis gateway store",
                )])  # fmt: skip
            return store
        if url not in self.stores:
            from bastion.store.redis import RedisStore
            from bastion.store.url import parse_store_url

            self.stores[url] = RedisStore.from_url(parse_store_url(url, "cache.redis"))
        return self.stores[url]

    def drop(self, keys: list[str] | None) -> None:
        """A purge seen in the store: drop this node's copies of `keys` (None: all)."""
        for source in self.sources.values():
            if keys is None or source.key in keys:
                source.purge()

    def spawn_purge_shared(self, source: TokenSource) -> None:
        """An upstream refused the token: delete the shared copy and tell the other nodes, which
        would otherwise go on sending the refused token from their own memory."""
        if source.shared is None:
            return
        import asyncio

        async def purge() -> None:
            await source.purge_shared()
            if self.deps.store is not None:
                await publish_purge(self.deps.store, [source.key])

        task = asyncio.ensure_future(purge())
        self.tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                LOG.warning("upstream-oauth: purge in the store failed", error=str(t.exception()))

        task.add_done_callback(done)

    async def aclose(self) -> None:
        for http in getattr(self, "clients", {}).values():
            await http.aclose()
        for store in getattr(self, "stores", {}).values():
            await store.aclose()
