"""The plugin contract (DESIGN.md "The plugin contract"): declare, build at load, serve, close.

A plugin class declares NAME (its config key), PRIORITY (higher runs first, Higress numbers),
Config (instance-level fields) and Rule (fields a `_rules_` entry or a route's `plugins:` map may
hold). Lifecycle, as Caddy modules: `__init__(config, deps)` builds state from the validated
config and raises ConfigError with paths relative to the plugin for what it refuses;
`bind(rule)` returns the Step that serves one scope (`rule` is self.config for the instance
scope); `aclose()` releases what was built and is safe after a failed build. Everything is
done at config load: a Step holds only what it needs to answer requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from bastion.config.model import Model
from bastion.gateway.clock import SYSTEM_CLOCK, Clock
from bastion.ops.metrics import Metrics
from bastion.plugins.step import LATER, Later, Step

if TYPE_CHECKING:
    from bastion.store.base import Store

__all__ = ["LATER", "Later", "Plugin", "PluginDeps", "Step"]


@dataclass(frozen=True, slots=True)
class PluginDeps:
    """What the gateway hands a plugin at build time."""

    clock: Clock = SYSTEM_CLOCK
    route_names: frozenset[str] = frozenset()
    #: the shared store, opened for plugins that declare USES_STORE (None otherwise)
    store: Store | None = None
    #: the worker's counters (auth outcomes); a fresh one when the plugin runs outside a worker
    metrics: Metrics = field(default_factory=Metrics)


class Plugin:
    """Base class of every plugin; subclasses set the class data and override what they need."""

    NAME: ClassVar[str]
    PRIORITY: ClassVar[int]
    Config: ClassVar[type[Model]]
    Rule: ClassVar[type[Model]]
    #: the instance config has Higress `global_auth` (auth plugins); others apply the instance
    #: config everywhere when it sets anything, or when the plugin has no rules at all
    GLOBAL_AUTH: ClassVar[bool] = False
    #: the plugin keeps state in the shared store: the gateway opens it and checks it in /readyz
    USES_STORE: ClassVar[bool] = False

    def __init__(self, config: Model, deps: PluginDeps) -> None:
        self.config = config
        self.deps = deps

    @classmethod
    def check_rule(
        cls, instance: Model, rule: Model | None, *, instance_applies: bool
    ) -> list[tuple[str, str]]:
        """Problems only visible beside the instance config, as (path relative to the section,
        message): for the instance section (`rule` None) and for each rule."""
        return []

    def bind(self, rule: Model) -> Step | None:
        """The Step for one scope: `rule` is a rule's config, or `self.config` for the instance
        scope; None when the plugin has nothing to do there."""
        raise NotImplementedError

    def endpoints(self) -> dict[str, Step]:
        """Paths this plugin answers on every host before routing (a JWKS document), each by a
        Step whose on_request always returns a Response."""
        return {}

    def identity_headers(self) -> set[str]:
        """Headers only this plugin may set upstream: the gateway strips them from every client
        request on every route (SPEC §10), besides the built-in X-Mse-Consumer,
        X-Auth-Request-* and eg-consumer-*."""
        return set()

    async def aclose(self) -> None:
        """Release what __init__ built; must not fail when __init__ did."""
