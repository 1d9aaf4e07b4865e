"""Higress rule syntax: instance config, `_rules_`, routes' `plugins:` maps, and global_auth."""

from __future__ import annotations

import pytest
import yaml

from bastion.config.model import Config, Model
from bastion.gateway.routing import DomainTable
from bastion.plugins import registry
from bastion.plugins.base import Plugin, Step
from bastion.plugins.headers.schema import HeadersConfig
from bastion.plugins.registry import PLUGINS as _PLUGINS
from bastion.plugins.registry import RulesError
from bastion.plugins.rules import PluginRules, resolve_rules

KNOWN = ", ".join(sorted(_PLUGINS))

ROUTES = """
services:
  - {name: backend, url: "http://127.0.0.1:9000"}
routes:
  - {name: route-a, path: /a, service: backend}
  - {name: route-b, path: /b, service: backend}
  - {name: route-c, path: /c, service: backend}
"""


def routes_with(route: str, plugins: str) -> str:
    """ROUTES with `plugins` (YAML flow text) as the named route's own `plugins:` map."""
    entry = f"{{name: {route}, path: /{route[-1]}, service: backend"
    return ROUTES.replace(entry, f"{entry}, plugins: {plugins}")


def config(plugins: str = "", routes: str = ROUTES) -> Config:
    data = yaml.safe_load(routes) or {}
    if plugins:
        data["plugins"] = yaml.safe_load(plugins)
    return Config.model_validate(data)


def resolve(plugins: str, routes: str = ROUTES) -> dict[str, PluginRules]:
    return resolve_rules(config(plugins, routes))


def refused(plugins: str, routes: str = ROUTES) -> list[tuple[str, str]]:
    with pytest.raises(RulesError) as caught:
        resolve(plugins, routes)
    return caught.value.problems


def sets(rule: Model | None) -> dict[str, str] | None:
    """The request headers a `headers` config sets: a short name for which scope won."""
    if rule is None:
        return None
    assert isinstance(rule, HeadersConfig)
    return dict(rule.request.set)


def scope(rules: PluginRules, route: str, host: str) -> Model | None:
    """The config that serves (route, host), in the documented order of rules.py."""
    if route in rules.route_rules:
        return rules.route_rules[route]
    domain = DomainTable(list(rules.domain_rules.items())).best(host)
    if domain is not None:
        return domain
    return rules.instance if rules.instance_applies else None


# --- precedence -------------------------------------------------------------------------------

PRECEDENCE = """
headers:
  request: {set: {X-Scope: instance}}
  _rules_:
    - _match_domain_: ["*.example.com"]
      request: {set: {X-Scope: wildcard}}
    - _match_domain_: ["*.b.example.com"]
      request: {set: {X-Scope: longer-wildcard}}
    - _match_domain_: [a.b.example.com, Test.COM]
      request: {set: {X-Scope: exact-domain}}
    - _match_route_: [route-a]
      request: {set: {X-Scope: route}}
"""


@pytest.mark.parametrize(
    ("route", "host", "winner"),
    [
        ("route-a", "a.b.example.com", "route"),  # a route rule beats every domain rule
        ("route-a", "other.org", "route"),
        ("route-b", "a.b.example.com", "exact-domain"),  # exact domain beats wildcards
        ("route-b", "test.com", "exact-domain"),  # patterns compare lower-case
        ("route-b", "x.b.example.com", "longer-wildcard"),  # longer wildcard beats shorter
        ("route-b", "x.a.b.example.com", "longer-wildcard"),
        ("route-b", "b.example.com", "wildcard"),
        ("route-b", "deep.x.example.com", "wildcard"),
        ("route-b", "example.com", "instance"),  # the apex is not *.example.com
        ("route-c", "other.org", "instance"),  # a domain rule beats the instance config
    ],
)
def test_route_rule_beats_domain_rule_beats_instance(route: str, host: str, winner: str) -> None:
    rules = resolve(PRECEDENCE)["headers"]
    assert sets(scope(rules, route, host)) == {"X-Scope": winner}


def test_rule_order_in_the_list_does_not_matter() -> None:
    forward = resolve(PRECEDENCE)["headers"]
    data = yaml.safe_load(PRECEDENCE)
    data["headers"]["_rules_"].reverse()
    backward = resolve(yaml.safe_dump(data))["headers"]
    assert forward.route_rules == backward.route_rules
    assert forward.domain_rules == backward.domain_rules


def test_one_rule_may_match_several_routes_and_domains() -> None:
    rules = resolve(
        """
headers:
  _rules_:
    - _match_route_: [route-a, route-b]
      request: {set: {X-R: ab}}
    - _match_domain_: ["*.example.com", test.com]
      request: {set: {X-D: d}}
"""
    )["headers"]
    assert set(rules.route_rules) == {"route-a", "route-b"}
    assert set(rules.domain_rules) == {"*.example.com", "test.com"}
    assert rules.route_rules["route-a"] is rules.route_rules["route-b"]


def test_match_keys_accept_a_single_name() -> None:
    rules = resolve(
        """
headers:
  _rules_:
    - {_match_route_: route-a, request: {set: {X-A: a}}}
    - {_match_domain_: Test.com, request: {set: {X-D: d}}}
"""
    )["headers"]
    assert set(rules.route_rules) == {"route-a"}
    assert set(rules.domain_rules) == {"test.com"}


def test_routes_own_plugins_map_is_a_route_rule() -> None:
    routes = routes_with("route-b", "{headers: {request: {set: {X-B: b}}}}")
    rules = resolve("headers: {request: {set: {X-I: i}}}", routes)["headers"]
    assert sets(rules.route_rules["route-b"]) == {"X-B": "b"}
    assert sets(scope(rules, "route-b", "any")) == {"X-B": "b"}
    assert sets(scope(rules, "route-a", "any")) == {"X-I": "i"}


def test_plugin_used_only_in_a_route_map_applies_only_there() -> None:
    routes = routes_with("route-a", "{headers: {request: {set: {X-A: a}}}}")
    rules = resolve("", routes)["headers"]
    assert set(rules.route_rules) == {"route-a"}
    assert rules.instance_applies is False
    assert scope(rules, "route-b", "any") is None


def test_a_rule_replaces_the_instance_config_rather_than_merging() -> None:
    rules = resolve(
        """
headers:
  request: {set: {X-I: i}, remove: [X-Gone]}
  _rules_:
    - {_match_route_: [route-a], request: {set: {X-A: a}}}
"""
    )["headers"]
    rule = rules.route_rules["route-a"]
    assert isinstance(rule, HeadersConfig)
    assert dict(rule.request.set) == {"X-A": "a"}
    assert rule.request.remove == []


def test_no_plugins_resolve_to_nothing() -> None:
    assert resolve("") == {}


# --- ties are refused at load -----------------------------------------------------------------


def test_same_route_in_two_rules_is_refused_naming_both() -> None:
    assert refused(
        """
headers:
  _rules_:
    - {_match_route_: [route-a, route-b], request: {set: {X-1: a}}}
    - {_match_route_: [route-c, route-b], request: {set: {X-2: b}}}
"""
    ) == [
        (
            "plugins.headers._rules_[1]._match_route_[1]",
            "route 'route-b' is already matched by plugins.headers._rules_[0]",
        )
    ]


def test_routes_own_plugins_map_and_a_match_route_rule_are_a_tie() -> None:
    routes = routes_with("route-b", "{headers: {}}")
    assert refused("headers: {_rules_: [{_match_route_: [route-b]}]}", routes) == [
        (
            "routes[1].plugins.headers",
            "route 'route-b' is already matched by plugins.headers._rules_[0]",
        )
    ]


def test_same_route_twice_in_one_rule_is_refused() -> None:
    assert refused("headers: {_rules_: [{_match_route_: [route-a, route-a]}]}") == [
        (
            "plugins.headers._rules_[0]._match_route_[1]",
            "route 'route-a' is already matched by plugins.headers._rules_[0]",
        )
    ]


@pytest.mark.parametrize(
    ("first", "second", "pattern"),
    [
        ("test.com", "test.com", "test.com"),
        ("test.com", "TEST.com", "test.com"),  # case-insensitive
        ("'*.example.com'", "'*.Example.COM'", "*.example.com"),
    ],
)
def test_same_domain_in_two_rules_is_refused(first: str, second: str, pattern: str) -> None:
    assert refused(
        f"""
headers:
  _rules_:
    - {{_match_domain_: [other.com, {first}]}}
    - {{_match_domain_: [{second}]}}
"""
    ) == [
        (
            "plugins.headers._rules_[1]._match_domain_[0]",
            f"domain {pattern!r} is already matched by plugins.headers._rules_[0]",
        )
    ]


def test_exact_domain_and_wildcard_of_the_same_name_do_not_tie() -> None:
    rules = resolve(
        """
headers:
  _rules_:
    - {_match_domain_: [example.com], request: {set: {X-D: apex}}}
    - {_match_domain_: ["*.example.com"], request: {set: {X-D: subs}}}
"""
    )["headers"]
    assert set(rules.domain_rules) == {"example.com", "*.example.com"}


def test_the_same_route_in_different_plugins_is_not_a_tie(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PLUGINS, FakeAuth.NAME, FakeAuth)
    resolved = resolve(
        """
headers: {_rules_: [{_match_route_: [route-a], request: {set: {X-A: a}}}]}
fake-auth: {_rules_: [{_match_route_: [route-a], allow: [c1]}]}
"""
    )
    assert (
        set(resolved["headers"].route_rules)
        == set(resolved["fake-auth"].route_rules)
        == {"route-a"}
    )


# --- malformed rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugins", "problem"),
    [
        (
            "headers: {_rules_: [{_match_route_: [rout-a]}]}",
            (
                "plugins.headers._rules_[0]._match_route_[0]",
                "unknown route 'rout-a' (did you mean 'route-a'?)",
            ),
        ),
        (
            "headers: {_rules_: [{_match_route_: [zzz]}]}",
            ("plugins.headers._rules_[0]._match_route_[0]", "unknown route 'zzz'"),
        ),
        (
            "headers: {_rules_: [{request: {set: {X-A: a}}}]}",
            (
                "plugins.headers._rules_[0]",
                "a rule needs exactly one of _match_route_ or _match_domain_",
            ),
        ),
        (
            "headers: {_rules_: [{_match_route_: [route-a], _match_domain_: [a.com]}]}",
            (
                "plugins.headers._rules_[0]",
                "a rule needs exactly one of _match_route_ or _match_domain_",
            ),
        ),
        (
            "headers: {_rules_: [{_match_route_: []}]}",
            ("plugins.headers._rules_[0]._match_route_", "must be a non-empty list of names"),
        ),
        (
            "headers: {_rules_: [{_match_domain_: [a.com, 5]}]}",
            ("plugins.headers._rules_[0]._match_domain_", "must be a non-empty list of names"),
        ),
        (
            "headers: {_rules_: [{_match_domain_: {a: b}}]}",
            ("plugins.headers._rules_[0]._match_domain_", "must be a non-empty list of names"),
        ),
        (
            "headers: {_rules_: [{_match_domain_: ['bad*.com']}]}",
            (
                "plugins.headers._rules_[0]._match_domain_[0]",
                "'bad*.com': a wildcard is allowed only as a leading '*.' (like *.example.com)",
            ),
        ),
        (
            "headers: {_rules_: [{_match_domain_: [a.com], request: {sett: {}}}]}",
            ("plugins.headers._rules_[0].request.sett", "unknown key (did you mean 'set'?)"),
        ),
        ("headers: {_rules_: [route-a]}", ("plugins.headers._rules_[0]", "must be a mapping")),
        (
            "headers: {_rules_: {_match_route_: [route-a]}}",
            ("plugins.headers._rules_", "must be a list of rules"),
        ),
        ("headers: [1, 2]", ("plugins.headers", "must be a mapping of the plugin's fields")),
        (
            "headers: {requests: {}}",
            ("plugins.headers.requests", "unknown key (did you mean 'request'?)"),
        ),
        (
            "headers: {global_auth: true}",
            ("plugins.headers.global_auth", "unknown key"),  # only auth plugins have global_auth
        ),
        (
            "header: {}",
            (
                "plugins.header",
                f"unknown plugin 'header' (did you mean 'headers'?); known: {KNOWN}",
            ),
        ),
        ("zzz: {}", ("plugins.zzz", f"unknown plugin 'zzz'; known: {KNOWN}")),
    ],
)
def test_malformed_plugin_sections_are_refused_with_their_path(
    plugins: str, problem: tuple[str, str]
) -> None:
    assert refused(plugins) == [problem]


def test_unknown_plugin_in_a_routes_map_names_the_route() -> None:
    routes = routes_with("route-c", "{headrs: {}}")
    assert refused("", routes) == [
        (
            "routes[2].plugins.headrs",
            f"unknown plugin 'headrs' (did you mean 'headers'?); known: {KNOWN}",
        )
    ]


def test_invalid_routes_map_names_the_route() -> None:
    routes = routes_with("route-c", "{headers: {request: {sett: {}}}}")
    assert refused("", routes) == [
        ("routes[2].plugins.headers.request.sett", "unknown key (did you mean 'set'?)")
    ]


def test_every_rules_problem_is_reported_at_once() -> None:
    found = refused(
        """
headers:
  requests: {}
  _rules_:
    - {_match_route_: [route-x]}
    - {}
    - {_match_domain_: [a.com]}
    - {_match_domain_: [A.com]}
nope: {}
"""
    )
    assert [path for path, _ in found] == [
        "plugins.headers.requests",
        "plugins.headers._rules_[0]._match_route_[0]",
        "plugins.headers._rules_[1]",
        "plugins.headers._rules_[3]._match_domain_[0]",
        "plugins.nope",
    ]


def test_rules_error_lists_its_problems_in_its_message() -> None:
    error = RulesError([("a", "one"), ("b", "two")])
    assert error.problems == [("a", "one"), ("b", "two")]
    assert str(error) == "a: one; b: two"


def test_check_plugins_returns_the_problems_instead_of_raising() -> None:
    assert registry.check_plugins(config("headers: {}")) == []
    assert registry.check_plugins(config("nope: {}")) == [
        ("plugins.nope", f"unknown plugin 'nope'; known: {KNOWN}")
    ]


# --- when the instance config applies ---------------------------------------------------------


class FakeAuthConfig(Model):
    global_auth: bool | None = None
    allow: list[str] = []


class FakeAuthRule(Model):
    allow: list[str] = []


class FakeAuth(Plugin):
    """A test-only auth plugin: Higress `global_auth` semantics, no behaviour."""

    NAME = "fake-auth"
    PRIORITY = 300
    Config = FakeAuthConfig
    Rule = FakeAuthRule
    GLOBAL_AUTH = True

    def bind(self, rule: Model | None) -> Step | None:
        return Step()


@pytest.fixture
def fake_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PLUGINS, FakeAuth.NAME, FakeAuth)


WITH_ROUTE_RULE = "  _rules_: [{_match_route_: [route-a], allow: [c1]}]\n"
WITH_DOMAIN_RULE = "  _rules_: [{_match_domain_: ['*.example.com'], allow: [c1]}]\n"


@pytest.mark.usefixtures("fake_auth")
@pytest.mark.parametrize(
    ("global_auth", "rules", "applies"),
    [
        ("true", "", True),  # true: everywhere
        ("true", WITH_ROUTE_RULE, True),
        ("true", WITH_DOMAIN_RULE, True),
        ("false", "", False),  # false: only where a rule matches
        ("false", WITH_ROUTE_RULE, False),
        ("false", WITH_DOMAIN_RULE, False),
        (None, "", True),  # unset: everywhere when there are no rules...
        (None, WITH_ROUTE_RULE, False),  # ...otherwise as false
        (None, WITH_DOMAIN_RULE, False),
    ],
)
def test_global_auth_decides_where_an_auth_plugins_instance_config_applies(
    global_auth: str | None, rules: str, applies: bool
) -> None:
    text = "fake-auth:\n  allow: [c0]\n"
    if global_auth is not None:
        text += f"  global_auth: {global_auth}\n"
    resolved = resolve(text + rules)["fake-auth"]
    assert resolved.instance_applies is applies


@pytest.mark.usefixtures("fake_auth")
def test_unset_global_auth_with_a_route_map_only_applies_on_that_route() -> None:
    routes = routes_with("route-a", "{fake-auth: {allow: [c1]}}")
    resolved = resolve("fake-auth: {}", routes)["fake-auth"]
    assert resolved.instance_applies is False
    assert isinstance(scope(resolved, "route-a", "any"), FakeAuthRule)
    assert scope(resolved, "route-b", "any") is None


@pytest.mark.usefixtures("fake_auth")
def test_global_auth_true_keeps_rules_more_specific_than_the_instance() -> None:
    resolved = resolve("fake-auth:\n  global_auth: true\n  allow: [c0]\n" + WITH_ROUTE_RULE)[
        "fake-auth"
    ]
    route_rule = scope(resolved, "route-a", "any")
    assert isinstance(route_rule, FakeAuthRule) and route_rule.allow == ["c1"]
    instance = scope(resolved, "route-b", "any")
    assert isinstance(instance, FakeAuthConfig) and instance.allow == ["c0"]


@pytest.mark.usefixtures("fake_auth")
def test_global_auth_is_an_instance_field_not_a_rule_field() -> None:
    assert refused("fake-auth: {_rules_: [{_match_route_: [route-a], global_auth: true}]}") == [
        ("plugins.fake-auth._rules_[0].global_auth", "unknown key")
    ]


@pytest.mark.parametrize(
    ("plugins", "applies"),
    [
        ("headers: {request: {set: {X-I: i}}}", True),  # sets fields, no rules
        ("headers: {}", True),  # no fields, no rules
        ("headers: null", True),
        (
            "headers:\n  request: {set: {X-I: i}}\n"
            + WITH_ROUTE_RULE.replace("allow: [c1]", "request: {}"),
            True,
        ),
        ("headers:\n" + WITH_ROUTE_RULE.replace("allow: [c1]", "request: {}"), False),  # rules only
        ("headers:\n" + WITH_DOMAIN_RULE.replace("allow: [c1]", "request: {}"), False),
    ],
)
def test_non_auth_instance_applies_when_it_sets_fields_or_there_are_no_rules(
    plugins: str, applies: bool
) -> None:
    assert resolve(plugins)["headers"].instance_applies is applies


def test_instance_config_is_validated_with_defaults() -> None:
    rules = resolve("headers: {request: {set: {X-I: i}}}")["headers"]
    assert rules.cls is registry.PLUGINS["headers"]
    assert isinstance(rules.instance, HeadersConfig)
    assert dict(rules.instance.response.set) == {}
