"""`oauth` config: the reference's fields and defaults, Bastion's opt-ins, and every config error
with its field path, as `bastion validate` reports them (resolve_rules → RulesError)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.plugins.oauth.schema import Consumer, OAuthConfig, OAuthRule, merged
from bastion.plugins.registry import RulesError
from bastion.plugins.rules import PluginRules, PluginSections, RoutePlugins, resolve_rules
from tests.plugins.oauth.support import CONSUMERS

ROUTES = ("api", "other", "third")


def resolve(oauth: dict[str, Any], routes: dict[str, dict[str, Any]] | None = None) -> PluginRules:
    own = routes or {}
    sections = PluginSections(
        plugins={"oauth": oauth}, routes=[RoutePlugins(n, own.get(n, {})) for n in ROUTES]
    )
    return resolve_rules(sections)["oauth"]


def problems(
    oauth: dict[str, Any], routes: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(RulesError) as info:
        resolve(oauth, routes)
    return info.value.problems


# --- fields and defaults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("issuer", "Higress-Gateway"),
        ("auth_path", "/oauth2/token"),
        ("global_credentials", True),
        ("header_name", "Authorization"),
        ("auth_header_name", None),
        ("auth_header", None),
        ("token_ttl", 7200),
        ("clock_skew_seconds", 60),
        ("keep_token", True),
        ("global_auth", None),
        ("allow", None),
        ("signing", None),
        ("rfc_errors", False),
        ("required_scopes", None),
    ],
)
def test_defaults_are_the_reference_ones(field: str, expected: object) -> None:
    config = OAuthConfig.model_validate({"consumers": CONSUMERS})
    assert getattr(config, field) == expected


def test_lockout_defaults_to_ten_failures_in_sixty_seconds() -> None:
    config = OAuthConfig.model_validate({"consumers": CONSUMERS})
    assert (config.lockout.max_failures, config.lockout.window) == (10, 60)


def test_reference_example_config_validates_unchanged() -> None:
    data = {
        "global_auth": False,
        "consumers": [
            {
                "name": "consumer1",
                "client_id": "12345678-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                "client_secret": "abcdefgh-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            },
            {
                "name": "consumer2",
                "client_id": "87654321-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                "client_secret": "hgfedcba-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            },
        ],
        "_rules_": [
            {"_match_route_": ["api", "other"], "allow": ["consumer1"]},
            {"_match_domain_": ["*.example.com", "test.com"], "allow": ["consumer2"]},
        ],
    }
    rules = resolve(data)
    assert not rules.instance_applies
    assert set(rules.route_rules) == {"api", "other"}
    assert set(rules.domain_rules) == {"*.example.com", "test.com"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("oauth2/token", "/oauth2/token"),  # Higress prepends the slash
        ("/oauth2/token", "/oauth2/token"),
        ("token", "/token"),
        ("/a/b/c", "/a/b/c"),
    ],
)
def test_auth_path_gets_a_leading_slash(given: str, expected: str) -> None:
    assert OAuthConfig.model_validate({"auth_path": given}).auth_path == expected


def test_auth_path_without_leading_slash_through_resolve_rules() -> None:
    rules = resolve({"consumers": CONSUMERS, "auth_path": "oauth2/token"})
    assert isinstance(rules.instance, OAuthConfig)
    assert rules.instance.auth_path == "/oauth2/token"


@pytest.mark.parametrize("bad", ["/token?x=1", "/token#frag", "/to ken", "/tok\ten", ""])
def test_auth_path_refuses_query_fragment_spaces_and_empty(bad: str) -> None:
    found = problems({"consumers": CONSUMERS, "auth_path": bad})
    assert [path for path, _ in found] == ["plugins.oauth.auth_path"]


@pytest.mark.parametrize(
    ("fields", "header"),
    [
        ({}, "Authorization"),
        ({"auth_header_name": "X-Token"}, "X-Token"),
        ({"auth_header": "X-Token"}, "X-Token"),  # the name Higress's code reads
        ({"auth_header": "x-token", "auth_header_name": "X-Token"}, "X-Token"),
    ],
)
def test_header_name(fields: dict[str, Any], header: str) -> None:
    config = OAuthConfig.model_validate({"consumers": CONSUMERS, **fields})
    assert config.header_name == header
    resolve({"consumers": CONSUMERS, **fields})  # no problem either


def test_auth_header_and_auth_header_name_naming_different_headers_conflict() -> None:
    found = problems({"consumers": CONSUMERS, "auth_header": "X-A", "auth_header_name": "X-B"})
    assert found == [
        ("plugins.oauth.auth_header", "auth_header and auth_header_name name different headers")
    ]


@pytest.mark.parametrize("bad", ["Bad Header", "X:Y", "", "X-\u00e9"])
def test_auth_header_name_must_be_a_header_name(bad: str) -> None:
    found = problems({"consumers": CONSUMERS, "auth_header_name": bad})
    assert [path for path, _ in found] == ["plugins.oauth.auth_header_name"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "has space"),
        ("name", "caf\u00e9"),
        ("name", "tab\there"),
        ("name", ""),
        ("client_id", "id with space"),
        ("client_id", "nl\n"),
        ("client_id", ""),
        ("client_secret", ""),
    ],
)
def test_consumer_fields_refused(field: str, value: str) -> None:
    consumer = {"name": "c", "client_id": "id", "client_secret": "secret", field: value}
    with pytest.raises(ValidationError):
        Consumer.model_validate(consumer)
    found = problems({"consumers": [consumer]})
    assert [path for path, _ in found] == [f"plugins.oauth.consumers[0].{field}"]


@pytest.mark.parametrize("missing", ["name", "client_id", "client_secret"])
def test_consumer_fields_are_required(missing: str) -> None:
    consumer = {"name": "c", "client_id": "id", "client_secret": "secret"}
    del consumer[missing]
    found = problems({"consumers": [consumer]})
    assert [path for path, _ in found] == [f"plugins.oauth.consumers[0].{missing}"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_ttl", 0),
        ("token_ttl", -1),
        ("token_ttl", 31_536_001),
        ("clock_skew_seconds", -1),
        ("clock_skew_seconds", 3601),
        ("issuer", ""),
        ("keep_token", "maybe"),
        ("global_credentials", "maybe"),
        ("rfc_errors", "maybe"),
        ("lockout", {"max_failures": 0}),
        ("lockout", {"window": 0}),
        ("lockout", {"window": 86401}),
        ("signing", {"alg": "HS256"}),
        ("signing", {"alg": "none"}),
        ("signing", {}),
        ("unknown_field", 1),
    ],
)
def test_out_of_range_and_unknown_fields_are_refused(field: str, value: object) -> None:
    found = problems({"consumers": CONSUMERS, field: value})
    assert found and all(path.startswith(f"plugins.oauth.{field}") for path, _ in found)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_signing_algorithms(alg: str) -> None:
    config = OAuthConfig.model_validate({"consumers": CONSUMERS, "signing": {"alg": alg}})
    assert config.signing is not None and config.signing.alg == alg


@pytest.mark.parametrize(
    "scopes",
    [[], ["two words"], ['quo"te'], ["back\\slash"], [""], ["tab\t"]],
)
def test_required_scopes_must_be_scope_tokens(scopes: list[str]) -> None:
    data = {"consumers": CONSUMERS, "signing": {"alg": "ES256"}, "required_scopes": scopes}
    found = problems(data)
    assert [path for path, _ in found] == ["plugins.oauth.required_scopes"]


# --- duplicates -------------------------------------------------------------------------------


def _consumers_with(**second: str) -> list[dict[str, Any]]:
    return [CONSUMERS[0], {**CONSUMERS[1], **second}]


@pytest.mark.parametrize(
    ("consumers", "path", "message"),
    [
        (
            _consumers_with(name="consumer1"),
            "consumers[1].name",
            "duplicate consumer name 'consumer1' (also consumers[0])",
        ),
        (
            _consumers_with(client_id=CONSUMERS[0]["client_id"]),
            "consumers[1].client_id",
            f"duplicate client_id {CONSUMERS[0]['client_id']!r} (also consumers[0])",
        ),
    ],
)
def test_duplicate_names_and_client_ids_name_their_path(
    consumers: list[dict[str, Any]], path: str, message: str
) -> None:
    assert problems({"consumers": consumers}) == [(f"plugins.oauth.{path}", message)]
    rule = {"_match_route_": ["api"], "consumers": consumers}
    assert problems({"consumers": CONSUMERS, "_rules_": [rule]}) == [
        (f"plugins.oauth._rules_[0].{path}", message)
    ]
    assert problems({"consumers": CONSUMERS}, {"other": {"oauth": {"consumers": consumers}}}) == [
        (f"routes[1].plugins.oauth.{path}", message)
    ]


def test_both_duplicates_at_once_are_both_reported() -> None:
    consumers = [*CONSUMERS, dict(CONSUMERS[0])]
    assert [path for path, _ in problems({"consumers": consumers})] == [
        "plugins.oauth.consumers[2].name",
        "plugins.oauth.consumers[2].client_id",
    ]


# --- allow ------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow", [["consumer1"], []])
def test_allow_at_instance_level_is_refused(allow: list[str]) -> None:
    found = problems({"consumers": CONSUMERS, "allow": allow})
    assert len(found) == 1
    path, message = found[0]
    assert path == "plugins.oauth.allow"
    assert "not in the instance config" in message


def test_allow_and_consumers_in_one_rule_are_refused() -> None:
    rule = {"_match_route_": ["api"], "allow": ["consumer1"], "consumers": CONSUMERS}
    found = problems({"consumers": CONSUMERS, "_rules_": [rule]})
    assert len(found) == 1
    assert found[0][0] == "plugins.oauth._rules_[0].allow"
    assert "cannot be in the same rule" in found[0][1]


def test_allow_and_consumers_in_a_routes_own_map_are_refused() -> None:
    own = {"api": {"oauth": {"allow": ["consumer1"], "consumers": CONSUMERS}}}
    found = problems({"consumers": CONSUMERS}, own)
    assert [path for path, _ in found] == ["routes[0].plugins.oauth.allow"]


def test_allow_naming_an_unknown_consumer() -> None:
    rule = {"_match_domain_": ["*.example.com"], "allow": ["consumer1", "nobody"]}
    assert problems({"consumers": CONSUMERS, "_rules_": [rule]}) == [
        ("plugins.oauth._rules_[0].allow[1]", "unknown consumer 'nobody'")
    ]


def test_allow_in_a_rule_is_kept() -> None:
    rules = resolve(
        {"consumers": CONSUMERS, "_rules_": [{"_match_route_": ["api"], "allow": ["consumer2"]}]}
    )
    rule = rules.route_rules["api"]
    assert isinstance(rule, OAuthRule)
    assert rule.allow == ["consumer2"]


def test_global_auth_is_instance_only() -> None:
    rule = {"_match_route_": ["api"], "global_auth": True}
    assert [path for path, _ in problems({"consumers": CONSUMERS, "_rules_": [rule]})] == [
        "plugins.oauth._rules_[0].global_auth"
    ]


# --- required_scopes and signing -------------------------------------------------------------


def test_required_scopes_without_signing_are_refused_naming_signing() -> None:
    found = problems({"consumers": CONSUMERS, "required_scopes": ["read"]})
    assert len(found) == 1
    path, message = found[0]
    assert path == "plugins.oauth.required_scopes"
    assert "signing" in message


def test_required_scopes_in_a_rule_without_signing_are_refused() -> None:
    rule = {"_match_route_": ["api"], "required_scopes": ["read"]}
    found = problems({"consumers": CONSUMERS, "_rules_": [rule]})
    assert [path for path, _ in found] == ["plugins.oauth._rules_[0].required_scopes"]
    assert "signing" in found[0][1]


@pytest.mark.parametrize(
    "data",
    [
        {"consumers": CONSUMERS, "signing": {"alg": "RS256"}, "required_scopes": ["read"]},
        {
            "consumers": CONSUMERS,
            "signing": {"alg": "ES256"},
            "_rules_": [{"_match_route_": ["api"], "required_scopes": ["read", "write"]}],
        },
        {
            "consumers": CONSUMERS,
            "_rules_": [
                {"_match_route_": ["api"], "signing": {"alg": "EdDSA"}, "required_scopes": ["a"]}
            ],
        },
    ],
)
def test_required_scopes_with_signing_are_accepted(data: dict[str, Any]) -> None:
    resolve(data)


# --- consumers required, global_auth ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"global_auth": True},
        {"global_auth": True, "_rules_": [{"_match_route_": ["api"], "allow": []}]},
        {"issuer": "me"},
    ],
)
def test_consumers_are_required_where_the_instance_config_applies(data: dict[str, Any]) -> None:
    found = problems(data)
    assert ("plugins.oauth.consumers", "required (here or in the instance config)") in found


def test_consumers_not_required_in_an_instance_config_that_applies_nowhere() -> None:
    rules = resolve({"global_auth": False})
    assert not rules.instance_applies


def test_a_rule_without_consumers_anywhere_is_refused() -> None:
    found = problems({"global_auth": False, "_rules_": [{"_match_route_": ["api"]}]})
    assert found == [
        ("plugins.oauth._rules_[0].consumers", "required (here or in the instance config)")
    ]


def test_route_scoped_consumers_need_none_at_instance_level() -> None:
    rules = resolve({"global_auth": False}, {"api": {"oauth": {"consumers": CONSUMERS}}})
    assert set(rules.route_rules) == {"api"}


def _select(rules: PluginRules, route: str, host: str = "example.com") -> str | None:
    chosen = rules.select(route, host)
    if chosen is None:
        return None
    if chosen is rules.instance:
        return "instance"
    return "rule"


@pytest.mark.parametrize(
    ("global_auth", "with_rule", "expected"),
    [
        # true: every route; a matched rule narrows
        (True, False, {"api": "instance", "other": "instance"}),
        (True, True, {"api": "rule", "other": "instance"}),
        # false: only routes and domains with a rule
        (False, False, {"api": None, "other": None}),
        (False, True, {"api": "rule", "other": None}),
        # unset: everything when there are no rules, otherwise as false
        (None, False, {"api": "instance", "other": "instance"}),
        (None, True, {"api": "rule", "other": None}),
    ],
)
def test_global_auth_semantics(
    global_auth: bool | None, with_rule: bool, expected: dict[str, str | None]
) -> None:
    data: dict[str, Any] = {"consumers": CONSUMERS}
    if global_auth is not None:
        data["global_auth"] = global_auth
    if with_rule:
        data["_rules_"] = [{"_match_route_": ["api"], "allow": ["consumer1"]}]
    rules = resolve(data)
    assert {route: _select(rules, route) for route in expected} == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("a.example.com", "rule"), ("example.com", None), ("test.com", "rule"), ("x.test.com", None)],
)
def test_domain_rules_apply_under_global_auth_false(host: str, expected: str | None) -> None:
    rule = {"_match_domain_": ["*.example.com", "test.com"], "allow": ["consumer2"]}
    rules = resolve({"consumers": CONSUMERS, "global_auth": False, "_rules_": [rule]})
    assert _select(rules, "other", host) == expected


def test_a_routes_own_map_is_a_rule_for_global_auth() -> None:
    rules = resolve({"consumers": CONSUMERS}, {"api": {"oauth": {"allow": ["consumer1"]}}})
    assert not rules.instance_applies  # unset with rules: as false
    assert _select(rules, "api") == "rule"
    assert _select(rules, "other") is None


# --- merged -----------------------------------------------------------------------------------


def test_merged_rule_fields_override_the_instance_ones() -> None:
    instance = OAuthConfig.model_validate(
        {"consumers": CONSUMERS, "issuer": "inst", "token_ttl": 100, "keep_token": False}
    )
    rule = OAuthRule.model_validate({"allow": ["consumer1"], "token_ttl": 50})
    effective = merged(instance, rule)
    assert effective.token_ttl == 50
    assert effective.issuer == "inst"
    assert effective.keep_token is False
    assert effective.allow == ["consumer1"]
    assert [c.name for c in effective.consumers or []] == ["consumer1", "consumer2"]
    assert merged(instance, None).allow is None


def test_merged_rule_consumers_replace_the_instance_ones() -> None:
    instance = OAuthConfig.model_validate({"consumers": CONSUMERS})
    rule = OAuthRule.model_validate({"consumers": [CONSUMERS[1]]})
    assert [c.name for c in merged(instance, rule).consumers or []] == ["consumer2"]
