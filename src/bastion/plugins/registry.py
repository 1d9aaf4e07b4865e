"""Config key → plugin class; validates `plugins:` sections into typed configs with field paths."""

from __future__ import annotations

import importlib
from typing import Any

from bastion.config.errors import suggest
from bastion.plugins.base import Plugin

#: config key → the plugin class, or where it is ("module:Class") until a config names it: a
#: worker imports only the plugins it runs (a proxy-only worker is ~2.8 MB smaller without the
#: oauth plugins' schemas, joserfc and cryptography)
PLUGINS: dict[str, type[Plugin] | str] = {
    "headers": "bastion.plugins.headers.handler:HeadersPlugin",
    "oauth": "bastion.plugins.oauth.handler:OAuthPlugin",
    "upstream-oauth": "bastion.plugins.upstream_oauth.handler:UpstreamOAuthPlugin",
}


def plugin_class(name: str) -> type[Plugin] | None:
    """The class registered as `name`, imported on first use; None when there is none."""
    found = PLUGINS.get(name)
    if not isinstance(found, str):
        return found
    module, _, attribute = found.partition(":")
    cls: type[Plugin] = getattr(importlib.import_module(module), attribute)
    PLUGINS[name] = cls
    return cls


def unknown_plugin(name: str) -> str:
    return f"unknown plugin {name!r}{suggest(name, PLUGINS)}; known: {', '.join(sorted(PLUGINS))}"


def check_plugins(data: dict[str, Any] | Any) -> list[tuple[str, str]]:
    """Every problem in the plugin sections of raw config data (instance, rules, routes' maps)."""
    from bastion.plugins.rules import PluginSections, RoutePlugins, resolve_rules

    if not isinstance(data, dict):  # a validated Config
        try:
            resolve_rules(data)
        except RulesError as exc:
            return exc.problems
        return []
    plugins = data.get("plugins") or {}
    if not isinstance(plugins, dict):
        return []  # the schema reports it
    routes = []
    for route in data.get("routes") or []:
        if isinstance(route, dict) and isinstance(route.get("name"), str):
            own = route.get("plugins") or {}
            routes.append(RoutePlugins(route["name"], own if isinstance(own, dict) else {}))
    try:
        resolve_rules(PluginSections(plugins, routes))
    except RulesError as exc:
        return exc.problems
    return []


class RulesError(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
