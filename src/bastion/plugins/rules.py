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
from bastion.plugins.registry import RulesError, plugin_class, unknown_plugin

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


class _Resolution:
    """One plugin's sections being validated; problems gather in a shared list."""

    def __init__(
        self, cls: type[Plugin], route_names: list[str], problems: list[tuple[str, str]]
    ) -> None:
        self.cls = cls
        self.route_names = route_names
        self.problems = problems
        self.route_rules: dict[str, Model] = {}
        self.domain_rules: dict[str, Model] = {}
        self.route_owner: dict[str, str] = {}  # route name → where its rule is
        self.sections: list[tuple[str, Model]] = []  # (where, rule) of every valid rule
        self.domain_owner: dict[str, str] = {}

    def rule_entry(self, entry: Any, at: str) -> None:
        """One `_rules_` entry: exactly one match key, then the plugin's rule fields."""
        if not isinstance(entry, dict):
            self.problems.append((at, "must be a mapping"))
            return
        has_route, has_domain = MATCH_ROUTE in entry, MATCH_DOMAIN in entry
        if has_route == has_domain:
            self.problems.append(
                (at, f"a rule needs exactly one of {MATCH_ROUTE} or {MATCH_DOMAIN}")
            )
            return
        body = {k: v for k, v in entry.items() if k not in (MATCH_ROUTE, MATCH_DOMAIN)}
        rule = _validate(self.cls.Rule, body, [at], self.problems)
        if rule is not None:
            self.sections.append((at, rule))
        key = MATCH_ROUTE if has_route else MATCH_DOMAIN
        for j, name in enumerate(_names(entry[key], f"{at}.{key}", self.problems)):
            where = f"{at}.{key}[{j}]"
            if has_route:
                self.route_rule(name, rule, at, where)
            else:
                self.domain_rule(name, rule, at, where)

    def route_rule(self, route: str, rule: Model | None, owner: str, where: str) -> None:
        if route not in self.route_names:
            hint = suggest(route, self.route_names)
            self.problems.append((where, f"unknown route {route!r}{hint}"))
        elif route in self.route_owner:
            already = self.route_owner[route]
            self.problems.append((where, f"route {route!r} is already matched by {already}"))
        else:
            self.route_owner[route] = owner
            if rule is not None:
                self.route_rules[route] = rule

    def domain_rule(self, domain: str, rule: Model | None, owner: str, where: str) -> None:
        try:
            pattern = check_domain_pattern(domain)
        except ValueError as exc:
            self.problems.append((where, str(exc)))
            return
        if pattern in self.domain_owner:
            already = self.domain_owner[pattern]
            self.problems.append((where, f"domain {pattern!r} is already matched by {already}"))
        else:
            self.domain_owner[pattern] = owner
            if rule is not None:
                self.domain_rules[pattern] = rule

    @property
    def has_rules(self) -> bool:
        return bool(self.route_owner or self.domain_owner)


def resolve_rules(config: Config | PluginSections) -> dict[str, PluginRules]:
    """Validate every plugin section; raise RulesError with every problem and its path."""
    plugins: dict[str, Any] = config.plugins
    routes: list[RoutePlugins] = [RoutePlugins(r.name, r.plugins) for r in config.routes]
    problems: list[tuple[str, str]] = []
    route_names = [r.name for r in routes]
    used = list(plugins)
    for route in routes:
        used.extend(name for name in route.plugins if name not in used)

    resolved: dict[str, PluginRules] = {}
    for name in used:
        cls = plugin_class(name)
        if cls is None:
            places = [f"plugins.{name}"] if name in plugins else [
                f"routes[{i}].plugins.{name}" for i, r in enumerate(routes) if name in r.plugins
            ]  # fmt: skip
            problems.extend((place, unknown_plugin(name)) for place in places)
            continue
        raw = plugins.get(name) or {}
        base = f"plugins.{name}"
        if not isinstance(raw, dict):
            problems.append((base, "must be a mapping of the plugin's fields"))
            continue
        fields = {k: v for k, v in raw.items() if k != RULES}
        instance = _validate(cls.Config, fields, [base], problems)
        resolution = _Resolution(cls, route_names, problems)
        raw_rules = raw.get(RULES) or []
        if not isinstance(raw_rules, list):
            problems.append((f"{base}.{RULES}", "must be a list of rules"))
            raw_rules = []
        for i, entry in enumerate(raw_rules):
            resolution.rule_entry(entry, f"{base}.{RULES}[{i}]")
        for i, route in enumerate(routes):
            if name in route.plugins:  # a route's own map means a _match_route_ rule
                at = f"routes[{i}].plugins.{name}"
                rule = _validate(cls.Rule, route.plugins[name] or {}, [at], problems)
                if rule is not None:
                    resolution.sections.append((at, rule))
                resolution.route_rule(route.name, rule, at, at)
        if instance is not None:
            applies = _instance_applies(cls, raw, fields, resolution.has_rules)
            for at, section in [(base, None), *resolution.sections]:
                problems.extend(
                    (f"{at}.{path}" if path else at, message)
                    for path, message in cls.check_rule(instance, section, instance_applies=applies)
                )
            resolved[name] = PluginRules(
                cls, instance, applies, resolution.route_rules, resolution.domain_rules
            )
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
