"""Higress rule syntax for every plugin: instance config, `_rules_`, routes' `plugins:` maps.

Bastion resolves by specificity, not list order (DESIGN.md "Decisions"): a route rule (a
`_match_route_` entry or the route's own `plugins:` map) beats the most specific matching
`_match_domain_` rule (exact host, then the longest `*.suffix`), which beats the instance config.
Two rules that would tie (the same route, or the same domain pattern, twice) are refused at load.
Where no rule matches, the instance config applies when `global_auth` says so (auth plugins:
true → everywhere; false → nowhere; unset → everywhere only if the plugin has no rules at all), or,
for other plugins, when the instance config sets anything or there are no rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bastion.config.errors import problems_from, suggest
from bastion.config.fields import check_domain_pattern
from bastion.config.model import Model
from bastion.gateway.routing import DomainTable
from bastion.plugins.base import Plugin
from bastion.plugins.registry import PLUGINS, RulesError, unknown_plugin

if TYPE_CHECKING:
    from bastion.config.model import Config

MATCH_ROUTE = "_match_route_"
MATCH_DOMAIN = "_match_domain_"
RULES = "_rules_"


@dataclass(slots=True)
class PluginRules:
    """One plugin's validated configuration, ready to build and bind."""

    cls: type[Plugin]
    instance: Model
    instance_applies: bool
    route_rules: dict[str, Model] = field(default_factory=dict)
    domain_rules: dict[str, Model] = field(default_factory=dict)  # pattern → rule
    _domains: DomainTable[Model] | None = None

    def select(self, route: str, host: str) -> Model | None:
        """The config that serves (route, host): the route's rule, else the most specific
        domain rule, else the instance config where it applies, else None (the plugin is off).
        `host` may be a `*.suffix` pattern standing for every host it covers."""
        rule = self.route_rules.get(route)
        if rule is not None:
            return rule
        if self.domain_rules:
            if self._domains is None:
                self._domains = DomainTable(list(self.domain_rules.items()))
            rule = self._domains.best(host)
            if rule is not None:
                return rule
        return self.instance if self.instance_applies else None


def _validate(
    model: type[Model], data: Any, path: list[str | int], problems: list[tuple[str, str]]
) -> Model | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, model, path, data=data))
        return None


def _names(value: Any, path: str, problems: list[tuple[str, str]]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.append((path, "must be a non-empty list of names"))
        return []
    return value


@dataclass(frozen=True, slots=True)
class RoutePlugins:
    """What rule resolution needs of a route: its name and its own `plugins:` map."""

    name: str
    plugins: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PluginSections:
    """The parts of a config rule resolution reads (a Config, or raw data being validated)."""

    plugins: dict[str, Any]
    routes: list[RoutePlugins]


def resolve_rules(config: Config | PluginSections) -> dict[str, PluginRules]:
    """Validate every plugin section; raise RulesError with every problem and its path."""
    plugins, routes = config.plugins, config.routes
    problems: list[tuple[str, str]] = []
    route_names = [r.name for r in routes]
    used = list(plugins)
    for route in routes:
        used.extend(name for name in route.plugins if name not in used)

    resolved: dict[str, PluginRules] = {}
    for name in used:
        cls = PLUGINS.get(name)
        if cls is None:
            where = (
                [f"plugins.{name}"]
                if name in plugins
                else [
                    f"routes[{i}].plugins.{name}" for i, r in enumerate(routes) if name in r.plugins
                ]
            )
            problems.extend((w, unknown_plugin(name)) for w in where)
            continue
        raw = plugins.get(name) or {}
        base = f"plugins.{name}"
        if not isinstance(raw, dict):
            problems.append((base, "must be a mapping of the plugin's fields"))
            continue
        fields = {k: v for k, v in raw.items() if k != RULES}
        instance = _validate(cls.Config, fields, [base], problems)
        rules = PluginRules(cls, instance, False) if instance is not None else None

        raw_rules = raw.get(RULES) or []
        if not isinstance(raw_rules, list):
            problems.append((f"{base}.{RULES}", "must be a list of rules"))
            raw_rules = []
        route_owner: dict[str, str] = {}
        domain_owner: dict[str, str] = {}
        for i, entry in enumerate(raw_rules):
            at = f"{base}.{RULES}[{i}]"
            if not isinstance(entry, dict):
                problems.append((at, "must be a mapping"))
                continue
            has_route, has_domain = MATCH_ROUTE in entry, MATCH_DOMAIN in entry
            if has_route == has_domain:
                problems.append(
                    (at, f"a rule needs exactly one of {MATCH_ROUTE} or {MATCH_DOMAIN}")
                )
                continue
            body = {k: v for k, v in entry.items() if k not in (MATCH_ROUTE, MATCH_DOMAIN)}
            rule = _validate(cls.Rule, body, [at], problems)
            if has_route:
                for j, route in enumerate(
                    _names(entry[MATCH_ROUTE], f"{at}.{MATCH_ROUTE}", problems)
                ):
                    where = f"{at}.{MATCH_ROUTE}[{j}]"
                    if route not in route_names:
                        hint = suggest(route, route_names)
                        problems.append((where, f"unknown route {route!r}{hint}"))
                    elif route in route_owner:
                        problems.append(
                            (where, f"route {route!r} is already matched by {route_owner[route]}")
                        )
                    else:
                        route_owner[route] = at
                        if rules is not None and rule is not None:
                            rules.route_rules[route] = rule
            else:
                for j, domain in enumerate(
                    _names(entry[MATCH_DOMAIN], f"{at}.{MATCH_DOMAIN}", problems)
                ):
                    where = f"{at}.{MATCH_DOMAIN}[{j}]"
                    try:
                        pattern = check_domain_pattern(domain)
                    except ValueError as exc:
                        problems.append((where, str(exc)))
                        continue
                    if pattern in domain_owner:
                        problems.append(
                            (
                                where,
                                f"domain {pattern!r} is already matched by {domain_owner[pattern]}",
                            )
                        )
                    else:
                        domain_owner[pattern] = at
                        if rules is not None and rule is not None:
                            rules.domain_rules[pattern] = rule
        for i, route in enumerate(routes):
            if name not in route.plugins:
                continue
            at = f"routes[{i}].plugins.{name}"
            if route.name in route_owner:
                problems.append(
                    (at, f"route {route.name!r} is already matched by {route_owner[route.name]}")
                )
                continue
            route_owner[route.name] = at
            rule = _validate(cls.Rule, route.plugins[name] or {}, [at], problems)
            if rules is not None and rule is not None:
                rules.route_rules[route.name] = rule
        if rules is not None:
            rules.instance_applies = _instance_applies(
                cls, raw, fields, bool(route_owner or domain_owner)
            )
            resolved[name] = rules
    if problems:
        raise RulesError(problems)
    return resolved


def _instance_applies(
    cls: type[Plugin], raw: dict[str, Any], fields: dict[str, Any], has_rules: bool
) -> bool:
    if cls.GLOBAL_AUTH:
        global_auth = raw.get("global_auth")
        if global_auth is None:
            return not has_rules  # reference 000/001: global only when no route/domain config
        return bool(global_auth)
    return bool(fields) or not has_rules
