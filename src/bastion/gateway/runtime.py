"""Compile a validated Config into the frozen Runtime the hot path reads; retire it after reload.

Everything that can be decided before traffic is decided here: the route matcher, each route's
plugin chain per host class, the upstream pools, the health paths, the trusted networks. A
reload builds a new Runtime beside the old one; requests keep the Runtime they started with,
and the old one closes its pools and plugins when its last request ends.
"""

from __future__ import annotations

import asyncio
import ipaddress

from bastion.config.model import Config
from bastion.errors import ConfigError
from bastion.gateway.clock import SYSTEM_CLOCK, Clock
from bastion.gateway.connection import ClientLimits
from bastion.gateway.forwarding import IDENTITY_NAMES, ForwardRule
from bastion.gateway.route import Chain, RouteRuntime
from bastion.gateway.routing import DomainTable, RouteMatcher, RouteSpec
from bastion.gateway.upstream import UpstreamPool
from bastion.ops.logging import LOG
from bastion.ops.metrics import Metrics
from bastion.plugins.base import Plugin, PluginDeps, Step
from bastion.plugins.registry import RulesError
from bastion.plugins.rules import PluginRules, resolve_rules
from bastion.store.base import Store
from bastion.store.factory import open_store


class Runtime:
    """One config, compiled; immutable while it serves (only its in-flight count moves)."""

    def __init__(
        self,
        config: Config,
        router: RouteMatcher[RouteRuntime],
        pools: dict[str, UpstreamPool],
        plugins: list[Plugin],
        identity_names: frozenset[bytes] = IDENTITY_NAMES,
        store: Store | None = None,
        endpoints: dict[str, Chain] | None = None,
    ) -> None:
        self.config = config
        #: normalized path → the plugin step that answers it before routing (JWKS)
        self.endpoints = endpoints or {}
        #: opened when a plugin needs it; a reload with the same URL hands it to the next Runtime
        self.store = store
        self.close_store = True  # False once a newer Runtime took the store over
        self.client_limits = ClientLimits(config.limits)
        self.access_log = config.access_log
        self.router = router
        self.pools = pools
        self.plugins = plugins
        prefix = config.health.path_prefix
        self.health_paths: dict[str, str] = (
            {}
            if prefix is None
            else {
                prefix.rstrip("/") + "/healthz": "healthz",
                prefix.rstrip("/") + "/readyz": "readyz",
            }
        )
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in config.trusted_proxies]
        self.forward_rule = ForwardRule(identity_names)
        self.inflight = 0
        self.retired = False
        self.closed = False

    def is_trusted(self, ip: str) -> bool:
        if not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def request_done(self) -> None:
        self.inflight -= 1
        if self.retired and self.inflight == 0:
            asyncio.get_running_loop().create_task(self.aclose())

    def retire(self) -> None:
        """A newer Runtime took over: close once the requests that started here have ended."""
        self.retired = True
        if self.inflight == 0:
            asyncio.get_running_loop().create_task(self.aclose())

    def sweep(self, now: float) -> None:
        for pool in self.pools.values():
            pool.sweep(now)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pool in self.pools.values():
            pool.close()
        for plugin in self.plugins:
            try:
                await plugin.aclose()
            except Exception as exc:  # closing must go on for the others
                LOG.error("plugin close failed", plugin=plugin.NAME, error=repr(exc))
        if self.store is not None and self.close_store:
            await self.store.aclose()


def _chain(steps: list[tuple[int, str, Step]]) -> Chain:
    ordered = [step for _, _, step in sorted(steps, key=lambda item: (-item[0], item[1]))]
    # requests go down the priorities, responses come back up them (as Envoy's filter chain)
    response = tuple(s for s in reversed(ordered) if s.handles_response)
    statuses: frozenset[int] | None = frozenset()
    for step in response:
        own = step.response_statuses()
        statuses = None if own is None or statuses is None else statuses | own
    return Chain(tuple(s for s in ordered if s.handles_request), response, statuses)


def _route_chains(
    route_name: str, bound: dict[str, tuple[PluginRules, Plugin, dict[int, Step | None]]]
) -> tuple[DomainTable[Chain] | None, Chain]:
    """The route's chain for each class of hosts (plugins/rules.py says which config wins)."""

    def chain_for(host: str) -> Chain:
        steps: list[tuple[int, str, Step]] = []
        for name, (rules, plugin, cache) in bound.items():
            config = rules.select(route_name, host)
            if config is None:
                continue
            if id(config) not in cache:  # one Step per config, shared by the routes it serves
                try:
                    cache[id(config)] = plugin.bind(config)
                except ConfigError as exc:  # bind's paths are relative to the plugin's section
                    base = f"plugins.{name}"
                    raise ConfigError(
                        [(f"{base}.{p}" if p else base, m) for p, m in exc.problems]
                    ) from None
            step = cache[id(config)]
            if step is not None:
                steps.append((plugin.PRIORITY, name, step))
        return _chain(steps)

    patterns = sorted(
        {
            p
            for rules, _, _ in bound.values()
            if route_name not in rules.route_rules
            for p in rules.domain_rules
        }
    )
    # a host matching no domain rule: "" is never a pattern nor a host
    default = chain_for("")
    if not patterns:
        return None, default
    # a pattern stands for its class of hosts ("*" is never an exact key)
    return DomainTable([(p, chain_for(p)) for p in patterns]), default


async def build_runtime(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    clock: Clock = SYSTEM_CLOCK,
    *,
    store: Store | None = None,
    store_url: str | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Compile `config`; raise ConfigError (nothing half-built survives a failure). `store` is
    the running one, reused when `store_url` (its URL) is still the config's."""
    try:
        resolved = resolve_rules(config)
    except RulesError as exc:
        raise ConfigError(exc.problems) from None

    needs_store = any(rules.cls.USES_STORE for rules in resolved.values())
    if not needs_store:
        store = None
    elif store is None or store_url != config.store:
        store = await open_store(config.store)  # connects lazily: an outage is not a bad config
    deps = PluginDeps(
        clock=clock,
        route_names=frozenset(r.name for r in config.routes),
        store=store,
        metrics=metrics if metrics is not None else Metrics(),
    )
    plugins: list[Plugin] = []
    bound: dict[str, tuple[PluginRules, Plugin, dict[int, Step | None]]] = {}
    problems: list[tuple[str, str]] = []
    for name, rules in resolved.items():
        try:
            plugin = rules.cls(rules.instance, deps)
        except ConfigError as exc:  # the plugin names paths below its own section
            base = f"plugins.{name}"
            problems.extend((f"{base}.{p}" if p else base, m) for p, m in exc.problems)
            continue
        plugins.append(plugin)
        bound[name] = (rules, plugin, {})
    if problems:
        for plugin in plugins:
            await plugin.aclose()
        if store is not None and store_url != config.store:
            await store.aclose()
        raise ConfigError(problems)
    pools = {s.name: UpstreamPool(s, loop) for s in config.services}
    routes: list[RouteSpec[RouteRuntime]] = []
    for route in config.routes:
        try:
            chains, default = _route_chains(route.name, bound)
        except ConfigError:
            for plugin in plugins:
                await plugin.aclose()
            if store is not None and store_url != config.store:
                await store.aclose()
            raise
        limits = route.limits or config.limits
        runtime_route = RouteRuntime(
            route.name, pools[route.service], limits.max_request_body, route.preserve_host,
            chains, default,
        )  # fmt: skip
        routes.append(RouteSpec(route.domains, route.path, route.path_type, runtime_route))
    identity = {
        n.lower().replace("_", "-").encode("latin-1") for p in plugins for n in p.identity_headers()
    }
    endpoints: dict[str, Chain] = {}
    for plugin in plugins:
        for path, step in plugin.endpoints().items():
            endpoints.setdefault(path, Chain((step,)))
    return Runtime(
        config, RouteMatcher(routes), pools, plugins, IDENTITY_NAMES | identity, store, endpoints
    )
