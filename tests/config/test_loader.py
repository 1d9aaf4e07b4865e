"""Config loading: YAML, ${ENV} interpolation, validation, and every error with its field path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from bastion.config import Config, load_config, load_config_text
from bastion.errors import BastionError, ConfigError
from bastion.gateway.routing import host_of
from bastion.plugins.registry import PLUGINS as _PLUGINS

KNOWN = ", ".join(sorted(_PLUGINS))

SERVICES = """
services:
  - name: backend
    url: http://127.0.0.1:9000
"""

MINIMAL = (
    SERVICES
    + """
routes:
  - name: route-a
    path: /api
    service: backend
"""
)


def problems(text: str, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The (path, message) pairs load_config_text refuses `text` with."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={} if env is None else env)
    return caught.value.problems


def lines(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The error as `bastion validate` prints it: one `path: message` line per problem."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={} if env is None else env)
    return str(caught.value).splitlines()


def route(**fields: str) -> str:
    """A config with one route whose fields are given as YAML flow text."""
    body = ", ".join(f"{k}: {v}" for k, v in {"name": "r", "service": "backend", **fields}.items())
    return SERVICES + f"routes:\n  - {{{body}}}\n"


# --- what loads -------------------------------------------------------------------------------


def test_empty_file_gives_the_defaults() -> None:
    config = load_config_text("", env={})
    assert config.listen_addresses == ["127.0.0.1:8080"]
    assert config.routes == [] and config.services == [] and config.plugins == {}
    assert config.limits.max_request_body == 104_857_600
    assert config.health.path_prefix == "/"


def test_minimal_config_loads_into_typed_models() -> None:
    config = load_config_text(MINIMAL, env={})
    assert isinstance(config, Config)
    (only,) = config.routes
    assert (only.name, only.path, only.path_type, only.service) == (
        "route-a",
        "/api",
        "prefix",
        "backend",
    )
    assert only.domains == []
    assert config.services[0].connect_timeout == 5
    assert config.services[0].timeout == 60


def test_listen_takes_one_address_or_a_list() -> None:
    assert load_config_text("listen: '[::1]:8080'", env={}).listen_addresses == ["[::1]:8080"]
    config = load_config_text("listen: ['127.0.0.1:80', ':8443']", env={})
    assert config.listen_addresses == ["127.0.0.1:80", ":8443"]


def test_domains_are_stored_lower_case() -> None:
    config = load_config_text(route(domains='[Test.COM, "*.Example.com"]'), env={})
    assert config.routes[0].domains == ["test.com", "*.example.com"]


def test_loaded_config_is_frozen() -> None:
    config = load_config_text(MINIMAL, env={})
    with pytest.raises(ValueError, match="frozen"):
        config.routes[0].path = "/other"


def test_config_error_is_a_bastion_error() -> None:
    assert issubclass(ConfigError, BastionError)


# --- error paths and messages -----------------------------------------------------------------


def test_unknown_service_names_the_route_and_suggests_the_close_name() -> None:
    text = MINIMAL + "  - {name: route-b, path: /b, service: bakend}\n"
    assert lines(text) == ["routes[1].service: unknown service 'bakend' (did you mean 'backend'?)"]


def test_unknown_service_without_a_close_name_has_no_hint() -> None:
    assert problems(route(service="zzz")) == [("routes[0].service", "unknown service 'zzz'")]


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("nonsense", "expected HOST:PORT, got 'nonsense'"),
        ("'127.0.0.1:99999'", "port must be a number from 0 to 65535, got '99999'"),
        ("'127.0.0.1:http'", "port must be a number from 0 to 65535, got 'http'"),
        ("'[::1:8080'", "expected [IPv6]:PORT, got '[::1:8080'"),
    ],
)
def test_bad_listen_address_is_reported_at_listen(listen: str, message: str) -> None:
    assert ("listen", message) in problems(f"listen: {listen}\n")


def test_bad_listen_address_in_a_list_names_its_index() -> None:
    assert ("listen[1]", "expected HOST:PORT, got 'bad'") in problems("listen: [':80', bad]\n")


def test_bad_listen_address_is_one_problem() -> None:
    assert problems("listen: nonsense\n") == [("listen", "expected HOST:PORT, got 'nonsense'")]


def test_bad_listen_address_in_a_list_is_one_problem() -> None:
    assert problems("listen: [':80', bad]\n") == [("listen[1]", "expected HOST:PORT, got 'bad'")]


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("listn: ':80'\n", "listn", "unknown key (did you mean 'listen'?)"),
        ("route: []\n", "route", "unknown key (did you mean 'routes'?)"),
        ("zzzz: 1\n", "zzzz", "unknown key"),
        (
            "limits: {max_body: 5}\n",
            "limits.max_body",
            "unknown key (did you mean 'max_request_body'?)",
        ),
        ("tls: {cert: a, key: b, kye: c}\n", "tls.kye", "unknown key (did you mean 'key'?)"),
        (
            "health: {path_prefx: /}\n",
            "health.path_prefx",
            "unknown key (did you mean 'path_prefix'?)",
        ),
        (
            SERVICES.replace("url:", "timout: 3\n    url:"),
            "services[0].timout",
            "unknown key (did you mean 'timeout'?)",
        ),
        (route(pathtype="exact"), "routes[0].pathtype", "unknown key (did you mean 'path_type'?)"),
        (
            route(limits="{max_request_body: 1, max_body: 2}"),
            "routes[0].limits.max_body",
            "unknown key (did you mean 'max_request_body'?)",
        ),
    ],
)
def test_unknown_keys_are_errors_with_a_did_you_mean_hint(
    text: str, path: str, message: str
) -> None:
    assert (path, message) in problems(text)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("services: [{name: backend}]\n", "services[0].url"),
        ("services: [{url: 'http://x'}]\n", "services[0].name"),
        (SERVICES + "routes: [{name: r}]\n", "routes[0].service"),
        (SERVICES + "routes: [{service: backend}]\n", "routes[0].name"),
        ("admin: {token: 0123456789abcdef}\n", "admin.listen"),
        ("tls: {cert: a.pem}\n", "tls.key"),
    ],
)
def test_missing_required_field_says_required(text: str, path: str) -> None:
    assert (path, "required") in problems(text)


def test_missing_required_field_line() -> None:
    assert lines("services: [{name: backend}]\n") == ["services[0].url: required"]


def test_duplicate_route_names_are_refused_at_the_second() -> None:
    text = MINIMAL + "  - {name: route-a, path: /b, service: backend}\n"
    assert problems(text) == [("routes[1].name", "duplicate route name 'route-a'")]


def test_duplicate_service_names_are_refused_at_the_second() -> None:
    text = SERVICES + "  - {name: backend, url: 'http://127.0.0.1:9001'}\n"
    assert problems(text) == [("services[1].name", "duplicate service name 'backend'")]


@pytest.mark.parametrize("name", ["has space", "-leading", "", "a/b", "x" * 129])
def test_bad_names_are_refused(name: str) -> None:
    ((path, message),) = problems(route(name=repr(name)))
    assert path == "routes[0].name"
    assert "is not a valid name" in message


def test_invalid_regex_path_is_reported_at_the_path_field() -> None:
    ((path, message),) = problems(route(path="'/a(['", path_type="regex"))
    assert path == "routes[0].path"
    assert message == "invalid regular expression: unterminated character set at position 3"


def test_regex_path_is_not_normalized_or_required_to_start_with_a_slash() -> None:
    config = load_config_text(route(path="'.*/admin//x'", path_type="regex"), env={})
    assert config.routes[0].path == ".*/admin//x"


@pytest.mark.parametrize(
    ("second", "shadowed"),
    [
        ("{name: b, path: /api, service: backend}", True),
        ("{name: b, path: /api, path_type: exact, service: backend}", False),
        ("{name: b, path: /api, domains: [a.com], service: backend}", False),
        ("{name: b, path: /api/, service: backend}", False),
    ],
)
def test_a_route_that_could_never_match_is_refused(second: str, shadowed: bool) -> None:
    text = MINIMAL.replace("name: route-a", "name: a") + f"  - {second}\n"
    if not shadowed:
        load_config_text(text, env={})
        return
    assert problems(text) == [
        ("routes[1]", "same domains, path and path_type as routes[0]: it could never match")
    ]


def test_a_route_shadowed_through_a_differently_spelled_domain_is_refused() -> None:
    text = SERVICES + (
        "routes:\n"
        "  - {name: a, domains: [example.com], path: /x, service: backend}\n"
        "  - {name: b, domains: ['Example.com.'], path: /x, service: backend}\n"
    )
    assert problems(text) == [
        ("routes[1]", "same domains, path and path_type as routes[0]: it could never match")
    ]


@pytest.mark.parametrize("path_type", ["prefix", "exact"])
def test_prefix_and_exact_paths_must_start_with_a_slash(path_type: str) -> None:
    assert problems(route(path="api", path_type=path_type)) == [
        ("routes[0].path", "'api' must start with '/'")
    ]


def test_unknown_path_type_is_refused() -> None:
    ((path, message),) = problems(route(path_type="glob"))
    assert path == "routes[0].path_type"
    assert "'prefix', 'exact' or 'regex'" in message


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("'a*.example.com'", "a wildcard is allowed only as a leading '*.'"),
        ("'*'", "a wildcard is allowed only as a leading '*.'"),
        ("'*.*.example.com'", "a wildcard is allowed only as a leading '*.'"),
        ("'exa mple.com'", "is not a valid domain name or *.suffix pattern"),
        ("'example..com'", "is not a valid domain name or *.suffix pattern"),
        ("'-bad.com'", "is not a valid domain name or *.suffix pattern"),
        ("'*.'", "is not a valid domain name or *.suffix pattern"),
        ("''", "is not a valid domain name or *.suffix pattern"),
    ],
)
def test_bad_domain_pattern_names_its_index(domain: str, message: str) -> None:
    ((path, text),) = problems(route(domains=f"[ok.com, {domain}]"))
    assert path == "routes[0].domains[1]"
    assert message in text


@pytest.mark.parametrize(
    ("domain", "stored"),
    [
        ("'example.com.'", "example.com"),  # host_of strips the root dot
        ("'*.Example.com.'", "*.example.com"),
        ("'::1'", "[::1]"),  # host_of keeps IPv6 in brackets
        ("'[::1]'", "[::1]"),
        ("'[2001:DB8:0::1]'", "[2001:db8::1]"),
        ("'10.0.0.1'", "10.0.0.1"),
    ],
)
def test_domain_patterns_are_stored_in_the_form_host_of_gives(domain: str, stored: str) -> None:
    config = load_config_text(route(domains=f"[{domain}]"), env={})
    assert config.routes[0].domains == [stored]
    if not stored.startswith("*."):
        assert host_of(stored) == stored  # what a Host header of that name becomes


def test_wildcard_before_an_ip_address_is_refused() -> None:
    assert problems(route(domains="['*.1.2.3.4']")) == [
        ("routes[0].domains[0]", "'*.1.2.3.4': a wildcard cannot stand before an IP address")
    ]


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("/%61pi", "/api"), ("//api", "/api"), ("/caf%c3%a9", "/caf%C3%A9"), ("/a/../api", "/api")],
)
@pytest.mark.parametrize("path_type", ["prefix", "exact"])
def test_route_path_not_in_normalized_form_is_refused_with_the_form_to_write(
    path: str, canonical: str, path_type: str
) -> None:
    # requests are matched on their normalized path, so such a route could never match
    assert problems(route(path=repr(path), path_type=path_type)) == [
        ("routes[0].path", f"{path!r} is not in normalized form; write {canonical!r}")
    ]


def test_route_path_with_a_broken_escape_is_refused() -> None:
    assert problems(route(path="'/%zz'")) == [
        ("routes[0].path", "'/%zz': invalid percent-encoding in the path")
    ]


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        (
            "services: [{name: b, url: 'ftp://x'}]\n",
            "services[0].url",
            "scheme must be http or https",
        ),
        ("services: [{name: b, url: 'http://'}]\n", "services[0].url", "has no host"),
        ("services: [{name: b, url: 'http://x?a=1'}]\n", "services[0].url", "no query or fragment"),
        ("services: [{name: b, url: 'http://x:99999'}]\n", "services[0].url", "out of range"),
        (
            "services: [{name: b, url: 'http://x', timeout: 0}]\n",
            "services[0].timeout",
            "greater than 0",
        ),
        ("store: 'mysql://x'\n", "store", "expected sqlite:///PATH"),
        (
            "trusted_proxies: [10.0.0.0/8, nope]\n",
            "trusted_proxies",
            "'nope' is not an IP address or CIDR",
        ),
        ("admin: {listen: ':9080', token: short}\n", "admin.token", "at least 16 characters"),
        ("admin: {listen: nope, token: 0123456789abcdef}\n", "admin.listen", "expected HOST:PORT"),
        ("health: {path_prefix: x}\n", "health.path_prefix", "must start with '/'"),
        (
            "limits: {max_request_body: -1}\n",
            "limits.max_request_body",
            "greater than or equal to 0",
        ),
    ],
)
def test_invalid_values_are_reported_at_their_field(text: str, path: str, fragment: str) -> None:
    found = problems(text)
    assert any(p == path and fragment in m for p, m in found), found


def test_max_header_size_below_1024_is_refused() -> None:
    ((path, message),) = problems("limits: {max_header_size: 10}\n")
    assert path == "limits.max_header_size"
    assert "greater than or equal to 1024" in message


def test_health_endpoints_can_be_turned_off() -> None:
    assert load_config_text("health: {path_prefix: null}\n", env={}).health.path_prefix is None


def test_unknown_plugin_is_reported_with_a_hint() -> None:
    assert problems(MINIMAL + "plugins: {header: {}}\n") == [
        (
            "plugins.header",
            f"unknown plugin 'header' (did you mean 'headers'?); known: {KNOWN}",
        )
    ]


def test_plugin_problems_carry_the_full_path() -> None:
    text = MINIMAL + "plugins: {headers: {request: {sett: {}}}}\n"
    assert problems(text) == [("plugins.headers.request.sett", "unknown key (did you mean 'set'?)")]


# --- every problem at once --------------------------------------------------------------------


def test_all_schema_problems_are_reported_at_once() -> None:
    text = """
listen: bad
limits: {max_body: 1}
services:
  - name: backend
  - {name: other, url: 'ftp://x'}
foo: 1
"""
    paths = {path for path, _ in problems(text)}
    assert {"listen", "limits.max_body", "services[0].url", "services[1].url", "foo"} <= paths


def test_all_cross_field_problems_are_reported_at_once() -> None:
    text = (
        SERVICES
        + """
  - {name: backend, url: 'http://127.0.0.1:9001'}
routes:
  - {name: a, path: /a, service: bakend}
  - {name: a, path: /b, service: nope}
plugins: {header: {}}
"""
    )
    assert lines(text) == [
        "services[1].name: duplicate service name 'backend'",
        "routes[0].service: unknown service 'bakend' (did you mean 'backend'?)",
        "routes[1].name: duplicate route name 'a'",
        "routes[1].service: unknown service 'nope'",
        f"plugins.header: unknown plugin 'header' (did you mean 'headers'?); known: {KNOWN}",
    ]


def test_schema_and_cross_field_problems_are_reported_together() -> None:
    text = "listen: bad\n" + MINIMAL.replace("service: backend", "service: bakend")
    paths = {path for path, _ in problems(text)}
    assert {"listen", "routes[0].service"} <= paths


def test_config_error_renders_one_line_per_problem() -> None:
    error = ConfigError([("a.b", "first"), ("c[0]", "second"), ("", "whole file")])
    assert str(error) == "a.b: first\nc[0]: second\nwhole file"


# --- ${ENV} interpolation ---------------------------------------------------------------------


ADMIN = "admin:\n  listen: 127.0.0.1:9080\n  token: {}\n"


@pytest.mark.parametrize(
    ("value", "env", "token"),
    [
        ("${TOKEN}", {"TOKEN": "0123456789abcdef"}, "0123456789abcdef"),
        ("pre-${A}-${B}-post", {"A": "aaaaaaaa", "B": "bbbbbbbb"}, "pre-aaaaaaaa-bbbbbbbb-post"),
        ("${TOKEN:-0123456789abcdef}", {}, "0123456789abcdef"),
        ("${TOKEN:-0123456789abcdef}", {"TOKEN": "from-env-0123456"}, "from-env-0123456"),
        ("'${A:-}0123456789abcdef'", {}, "0123456789abcdef"),  # an empty default
        ("'$${NOT_ENV}-0123456789'", {}, "${NOT_ENV}-0123456789"),  # $${ is a literal ${
        ("'cost $5 0123456789abcdef'", {}, "cost $5 0123456789abcdef"),  # a lone $ stays
        ("${A}", {"A": "${B}-0123456789abcdef"}, "${B}-0123456789abcdef"),  # no re-expansion
    ],
)
def test_env_references_are_interpolated(value: str, env: dict[str, str], token: str) -> None:
    config = load_config_text(ADMIN.format(value), env=env)
    assert config.admin is not None
    assert config.admin.token == token


def test_interpolated_text_is_a_value_never_yaml() -> None:
    env = {"TOKEN": "0123456789abcdef\nlisten: evil"}
    config = load_config_text(ADMIN.format("${TOKEN}"), env=env)
    assert config.admin is not None
    assert config.admin.token == env["TOKEN"]
    assert config.listen_addresses == ["127.0.0.1:8080"]


def test_interpolated_numbers_are_coerced_by_the_schema() -> None:
    config = load_config_text("limits: {max_request_body: '${MAX}'}\n", env={"MAX": "2048"})
    assert config.limits.max_request_body == 2048


def test_interpolation_reaches_lists_and_nested_mappings() -> None:
    text = "services:\n  - name: backend\n    url: ${UPSTREAM}\nlisten: ['${L1}', ':81']\n"
    config = load_config_text(text, env={"UPSTREAM": "http://10.0.0.1:80", "L1": ":80"})
    assert config.services[0].url == "http://10.0.0.1:80"
    assert config.listen_addresses == [":80", ":81"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (ADMIN.format("${BASTION_ADMIN_TOKEN}"), "admin.token"),
        ("services:\n  - name: b\n    url: ${UPSTREAM}\n", "services[0].url"),
        ("listen: [':80', '${PORT_2}']\n", "listen[1]"),
        (
            "plugins:\n  headers:\n    request: {set: {X-A: '${HDR}'}}\n",
            "plugins.headers.request.set.X-A",
        ),
    ],
)
def test_missing_env_variable_is_an_error_at_its_path(text: str, path: str) -> None:
    name = text.split("${")[1].split("}")[0]
    assert (path, f"environment variable {name} is not set") in problems(text)


def test_every_missing_env_variable_is_reported() -> None:
    text = "store: '${STORE}'\nlisten: '${LISTEN}'\n"
    found = problems(text)
    assert ("store", "environment variable STORE is not set") in found
    assert ("listen", "environment variable LISTEN is not set") in found


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_TOKEN", "0123456789abcdef")
    config = load_config_text(ADMIN.format("${BASTION_TEST_TOKEN}"))
    assert config.admin is not None
    assert config.admin.token == "0123456789abcdef"


def test_keys_are_not_interpolated() -> None:
    assert problems("'${KEY}': 1\n", env={"KEY": "listen"}) == [("${KEY}", "unknown key")]


def test_env_default_applies_when_the_variable_is_empty() -> None:
    config = load_config_text("listen: '${LISTEN:-127.0.0.1:9999}'\n", env={"LISTEN": ""})
    assert config.listen_addresses == ["127.0.0.1:9999"]


# --- YAML -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("listen: ':1'\nlisten: ':2'\n", "<config>:2:1", "'listen'"),
        (
            "limits:\n  max_request_body: 1\n  max_request_body: 2\n",
            "<config>:3:3",
            "'max_request_body'",
        ),
        (
            "plugins:\n  headers:\n    request:\n      set: {X-A: a, X-A: b}\n",
            "<config>:4:21",
            "'X-A'",
        ),
    ],
)
def test_duplicate_yaml_key_is_refused_with_its_line(text: str, where: str, key: str) -> None:
    assert lines(text) == [f"{where}: invalid YAML: duplicate key {key}"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems(text) == [("", "<config>: the top level must be a mapping of keys")]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("listen: ':80'\nroutes: [1, 2\nplugins: {}\n", 3),
        ("a: 1\n  b: 2\n", 2),
        ("listen: ':80'\nstore: \"unterminated\n", 3),
        ("a: 1\n\tb: 2\n", 2),
    ],
)
def test_yaml_syntax_error_names_the_line(text: str, line: int) -> None:
    ((path, message),) = problems(text)
    assert path == ""
    assert message.startswith(f"<config>:{line}:")
    assert "invalid YAML" in message


def test_yaml_is_loaded_safely() -> None:
    ((_, message),) = problems("listen: !!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in message


def test_anchors_and_aliases_work() -> None:
    text = (
        SERVICES
        + "routes:\n"
        + "  - {name: a, path: /a, service: backend,\n"
        + "     plugins: &p {headers: {request: {set: {X-A: a}}}}}\n"
        + "  - {name: b, path: /b, service: backend, plugins: *p}\n"
    )
    config = load_config_text(text, env={})
    assert config.routes[0].plugins == config.routes[1].plugins


def test_yaml_merge_keys_work_and_explicit_keys_override() -> None:
    text = (
        SERVICES
        + "routes:\n"
        + "  - &base {name: a, path: /a, service: backend, path_type: exact}\n"
        + "  - <<: *base\n"
        + "    name: b\n"
        + "    path: /b\n"
    )
    config = load_config_text(text, env={})
    assert [(r.name, r.path, r.path_type, r.service) for r in config.routes] == [
        ("a", "/a", "exact", "backend"),
        ("b", "/b", "exact", "backend"),
    ]


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "? {a: 1}\n: 1\n"])
def test_unhashable_yaml_key_is_a_config_error(text: str) -> None:
    assert problems(text) == [
        (
            "",
            "<config>:1:3: invalid YAML: "
            "a mapping key must be a plain value, not a list or mapping",
        )
    ]


def test_non_string_key_is_refused() -> None:
    assert problems("1: x\n")


# --- load_config (files) ----------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_config(path, env={}).routes[0].name == "route-a"


def test_yaml_error_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("listen: ':80'\nlisten: ':81'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == f"{path}:2:1: invalid YAML: duplicate key 'listen'"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems[0][0] == ""


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"listen: '\xff'\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, env={})
