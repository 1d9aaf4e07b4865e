"""`upstream-oauth` config: Kong's field groups and defaults, Bastion's differences, and every
config error with its field path, as `bastion validate` reports them (resolve_rules, RulesError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.plugins.registry import RulesError
from bastion.plugins.rules import PluginRules, PluginSections, RoutePlugins, resolve_rules
from bastion.plugins.upstream_oauth.handler import UpstreamOAuthPlugin
from bastion.plugins.upstream_oauth.schema import UpstreamOAuthConfig

ROUTES = ("api", "other")
BASE = "plugins.upstream-oauth"
OAUTH: dict[str, Any] = {
    "token_endpoint": "https://idp.example.com/oauth2/token",
    "client_id": "gateway",
    "client_secret": "s3cret",
}


def resolve(
    section: dict[str, Any], routes: dict[str, dict[str, Any]] | None = None
) -> PluginRules:
    own = routes or {}
    sections = PluginSections(
        plugins={"upstream-oauth": section},
        routes=[RoutePlugins(n, own.get(n, {})) for n in ROUTES],
    )
    return resolve_rules(sections)["upstream-oauth"]


def problems(
    section: dict[str, Any], routes: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(RulesError) as info:
        resolve(section, routes)
    return info.value.problems


def paths(section: dict[str, Any]) -> list[str]:
    return [path for path, _ in problems(section)]


def config(**groups: Any) -> dict[str, Any]:
    oauth = {**OAUTH, **groups.pop("oauth", {})}
    return {"oauth": oauth, **groups}


# --- fields and defaults ----------------------------------------------------------------------


def test_the_plugin_is_registered_with_kongs_priority() -> None:
    rules = resolve(config())
    assert rules.cls is UpstreamOAuthPlugin
    assert UpstreamOAuthPlugin.NAME == "upstream-oauth"
    assert UpstreamOAuthPlugin.PRIORITY == 760
    assert isinstance(rules.instance, UpstreamOAuthConfig)
    assert rules.instance_applies


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("oauth.grant_type", "client_credentials"),
        ("oauth.scopes", ["openid"]),
        ("oauth.audience", []),
        ("oauth.username", None),
        ("oauth.password", None),
        ("oauth.token_post_args", {}),
        ("oauth.token_headers", {}),
        ("client.auth_method", "client_secret_post"),
        ("client.client_secret_jwt_alg", "HS512"),
        ("client.private_key", None),
        ("client.kid", None),
        ("client.private_key_jwt_alg", "RS256"),
        ("client.timeout", 10000),
        ("client.ssl_verify", True),
        ("client.ssl_ca_file", None),
        ("client.http_proxy", None),
        ("client.https_proxy", None),
        ("client.no_proxy", None),
        ("client.http_version", 1.1),
        ("client.keep_alive", True),
        ("cache.strategy", "memory"),
        ("cache.redis", None),
        ("cache.memory.dictionary_name", "kong_db_cache"),
        ("cache.eagerly_expire", 5),
        ("cache.default_ttl", 3600),
        ("behavior.upstream_access_token_header_name", "Authorization"),
        ("behavior.idp_error_response_status_code", 502),
        ("behavior.idp_error_response_content_type", "application/json; charset=utf-8"),
        ("behavior.idp_error_response_message", "Failed to authenticate request to upstream"),
        (
            "behavior.idp_error_response_body_template",
            '{ "code": "{{status}}", "message": "{{message}}" }',
        ),
        ("behavior.purge_token_on_upstream_status_codes", [401]),
    ],
)
def test_defaults_are_kongs(path: str, expected: object) -> None:
    value: Any = resolve(config()).instance
    for part in path.split("."):
        value = getattr(value, part)
    assert value == expected


def test_a_kong_config_block_validates_unchanged() -> None:
    kong = {
        "oauth": {
            "token_endpoint": "https://idp.example.com/token",
            "grant_type": "password",
            "client_id": "gw",
            "client_secret": "s",
            "username": "svc",
            "password": "pw",
            "scopes": ["read", "write"],
            "audience": ["billing"],
            "token_post_args": {"resource": "billing"},
            "token_headers": {"X-Tenant": "acme"},
        },
        "client": {
            "auth_method": "client_secret_jwt",
            "client_secret_jwt_alg": "HS256",
            "http_version": 1.1,
            "http_proxy": "http://proxy:3128",
            "https_proxy": "http://proxy:3128",
            "http_proxy_authorization": "Basic abc",
            "https_proxy_authorization": "Basic abc",
            "no_proxy": "localhost,idp.internal",
            "timeout": 5000,
            "keep_alive": False,
            "ssl_verify": False,
        },
        "cache": {
            "strategy": "memory",
            "memory": {"dictionary_name": "kong_db_cache"},
            "eagerly_expire": 0,
            "default_ttl": 60,
        },
        "behavior": {
            "upstream_access_token_header_name": "X-Upstream-Token",
            "idp_error_response_status_code": 503,
            "idp_error_response_content_type": "text/plain",
            "idp_error_response_message": "no token",
            "idp_error_response_body_template": "{{status}}: {{message}}",
            "purge_token_on_upstream_status_codes": [],
        },
    }
    instance = resolve(kong).instance
    assert isinstance(instance, UpstreamOAuthConfig)
    assert instance.model_dump(exclude_unset=True) == kong


def test_a_rule_and_a_routes_own_map_are_whole_configs() -> None:
    rule = {"_match_route_": ["api"], **config(oauth={"client_id": "rule"})}
    own = {"other": {"upstream-oauth": config(oauth={"client_id": "own"})}}
    rules = resolve({**config(), "_rules_": [rule]}, own)
    api, other = rules.route_rules["api"], rules.route_rules["other"]
    assert isinstance(api, UpstreamOAuthConfig) and isinstance(other, UpstreamOAuthConfig)
    assert (api.oauth.client_id, other.oauth.client_id) == ("rule", "own")
    assert api.oauth.scopes == ["openid"]


@pytest.mark.parametrize("where", ["rules", "route"])
def test_rules_without_an_instance_config(where: str) -> None:
    if where == "rules":
        rules = resolve({"_rules_": [{"_match_route_": ["api"], **config()}]})
    else:
        rules = resolve({}, {"api": {"upstream-oauth": config()}})
    assert set(rules.route_rules) == {"api"}
    assert not rules.instance_applies


def test_auth_method_none_needs_no_client_id() -> None:
    instance = resolve(
        {"oauth": {"token_endpoint": "https://idp/token"}, "client": {"auth_method": "none"}}
    ).instance
    assert isinstance(instance, UpstreamOAuthConfig)
    assert instance.oauth.client_id is None


def test_private_key_from_a_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )  # an RSA key: private_key_jwt_alg defaults to RS256
    (tmp_path / "key.pem").write_text(pem)
    section = config(
        oauth={"client_secret": None},
        client={"auth_method": "private_key_jwt", "private_key": f"@{tmp_path / 'key.pem'}"},
    )
    instance = resolve(section).instance
    assert isinstance(instance, UpstreamOAuthConfig)
    assert instance.client.private_key == pem


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@redis.internal:6380/1",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "redis+cluster://n1:7000,n2:7001",
    ],
)
def test_cache_redis_takes_a_redis_store_url(url: str) -> None:
    instance = resolve(config(cache={"strategy": "redis", "redis": url})).instance
    assert isinstance(instance, UpstreamOAuthConfig)
    assert instance.cache.redis == url


@pytest.mark.parametrize("status", [500, 503, 599])
def test_error_statuses_in_range(status: int) -> None:
    section = config(behavior={"idp_error_response_status_code": status})
    instance = resolve(section).instance
    assert isinstance(instance, UpstreamOAuthConfig)
    assert instance.behavior.idp_error_response_status_code == status


# --- errors and their paths -------------------------------------------------------------------


def test_the_token_endpoint_is_required() -> None:
    assert paths({"oauth": {"client_id": "a", "client_secret": "b"}}) == [
        f"{BASE}.oauth.token_endpoint"
    ]


def test_the_oauth_group_is_required() -> None:
    assert paths({"client": {"auth_method": "none"}}) == [f"{BASE}.oauth"]


@pytest.mark.parametrize(
    "endpoint", ["idp.example.com/token", "ftp://idp.example.com/token", "https://", "/token", ""]
)
def test_the_token_endpoint_must_be_an_http_url(endpoint: str) -> None:
    found = problems(config(oauth={"token_endpoint": endpoint}))
    assert found == [(f"{BASE}.oauth.token_endpoint", "must be an http:// or https:// URL")]


@pytest.mark.parametrize("status", [499, 600, 200, 404])
def test_the_error_status_must_be_5xx(status: int) -> None:
    section = config(behavior={"idp_error_response_status_code": status})
    assert paths(section) == [f"{BASE}.behavior.idp_error_response_status_code"]


@pytest.mark.parametrize("fields", [{}, {"username": "svc"}, {"password": "pw"}])
def test_the_password_grant_needs_username_and_password(fields: dict[str, str]) -> None:
    section = config(oauth={"grant_type": "password", **fields})
    [(path, message)] = problems(section)
    assert path == f"{BASE}.oauth"
    assert "username" in message and "password" in message


def test_an_unknown_grant_type() -> None:
    assert paths(config(oauth={"grant_type": "authorization_code"})) == [f"{BASE}.oauth.grant_type"]


@pytest.mark.parametrize(
    "method", ["client_secret_post", "client_secret_basic", "client_secret_jwt"]
)
def test_client_secret_methods_need_the_secret(method: str) -> None:
    section = config(oauth={"client_secret": None}, client={"auth_method": method})
    [(path, message)] = problems(section)
    assert path == BASE
    assert "oauth.client_secret" in message and method in message


@pytest.mark.parametrize(
    "method", ["client_secret_post", "client_secret_basic", "client_secret_jwt", "private_key_jwt"]
)
def test_every_method_but_none_needs_the_client_id(method: str) -> None:
    section = config(
        oauth={"client_id": None}, client={"auth_method": method, "private_key": "pem"}
    )
    [(path, message)] = problems(section)
    assert path == BASE
    assert "oauth.client_id" in message


def test_private_key_jwt_needs_the_key() -> None:
    section = config(client={"auth_method": "private_key_jwt"})
    [(path, message)] = problems(section)
    assert path == BASE
    assert "client.private_key" in message


def test_a_missing_private_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "key.pem"
    section = config(client={"auth_method": "private_key_jwt", "private_key": f"@{missing}"})
    [(path, message)] = problems(section)
    assert path == f"{BASE}.client.private_key"
    assert str(missing) in message


@pytest.mark.parametrize(
    ("group", "field", "value"),
    [
        ("client", "auth_method", "tls_client_auth"),
        ("client", "client_secret_jwt_alg", "RS256"),
        ("client", "private_key_jwt_alg", "HS256"),
        ("client", "timeout", 0),
        ("cache", "strategy", "cluster"),
        ("cache", "eagerly_expire", -1),
        ("cache", "default_ttl", 0),
        ("behavior", "purge_token_on_upstream_status_codes", [401, 99]),
        ("behavior", "purge_token_on_upstream_status_codes", [600]),
        ("behavior", "idp_error_response_content_type", "text/plain\r\nX-Evil: 1"),
        ("behavior", "upstream_access_token_header_name", "Bad Header"),
        ("oauth", "token_headers", {"X-A": "1\r\nX-Evil: 1"}),
        ("oauth", "scopes", "openid"),
    ],
)
def test_bad_values_name_their_field(group: str, field: str, value: Any) -> None:
    found = paths(config(**{group: {field: value}}))
    assert found and all(p.startswith(f"{BASE}.{group}.{field}") for p in found), found


def test_kongs_redis_object_is_refused_with_a_hint() -> None:
    section = config(cache={"strategy": "redis", "redis": {"host": "redis", "port": 6379}})
    [(path, message)] = problems(section)
    assert path == f"{BASE}.cache.redis"
    assert "store URL" in message and "redis://" in message


def test_cache_redis_must_be_a_redis_url() -> None:
    section = config(cache={"strategy": "redis", "redis": "sqlite:///tokens.db"})
    assert problems(section) == [(f"{BASE}.cache.redis", "must be a Redis URL")]


@pytest.mark.parametrize("url", ["memcached://cache:11211", "not a url"])
def test_cache_redis_that_is_no_store_url_is_a_rules_problem(url: str) -> None:
    section = config(cache={"strategy": "redis", "redis": url}, bogus=1)
    assert sorted(paths(section)) == [f"{BASE}.bogus", f"{BASE}.cache.redis"]


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({**config(), "config": {}}, f"{BASE}.config"),
        (config(oauth={"token_url": "https://x/y"}), f"{BASE}.oauth.token_url"),
        (config(client={"verify": True}), f"{BASE}.client.verify"),
        (config(cache={"ttl": 5}), f"{BASE}.cache.ttl"),
        (config(behavior={"status": 500}), f"{BASE}.behavior.status"),
    ],
)
def test_unknown_keys_are_refused(section: dict[str, Any], path: str) -> None:
    [(found, message)] = problems(section)
    assert found == path
    assert message.startswith("unknown key")


def test_problems_in_rules_name_the_rule() -> None:
    rule = {"_match_route_": ["api"], "oauth": {"token_endpoint": "nope"}}
    own = {"other": {"upstream-oauth": config(behavior={"idp_error_response_status_code": 400})}}
    found = [p for p, _ in problems({**config(), "_rules_": [rule]}, own)]
    assert f"{BASE}._rules_[0].oauth.token_endpoint" in found
    assert "routes[1].plugins.upstream-oauth.behavior.idp_error_response_status_code" in found


def test_a_content_type_that_cannot_be_a_header_is_refused() -> None:
    section = config(behavior={"idp_error_response_content_type": "text/plain; x=€"})
    assert paths(section) == [f"{BASE}.behavior.idp_error_response_content_type"]
