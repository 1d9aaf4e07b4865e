"""`headers` plugin config: header names, values, framing headers, and error paths."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config.errors import problems_from
from bastion.config.model import Config
from bastion.plugins.headers.schema import FRAMING_HEADERS, HeadersConfig
from bastion.plugins.registry import RulesError
from bastion.plugins.rules import resolve_rules

PREFIX = ["plugins", "headers"]


def refused(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The problems as a user sees them, with the plugin's own path in front."""
    with pytest.raises(ValidationError) as caught:
        HeadersConfig.model_validate(data)
    return problems_from(caught.value, HeadersConfig, PREFIX)


def test_defaults_change_nothing() -> None:
    config = HeadersConfig.model_validate({})
    for edits in (config.request, config.response):
        assert dict(edits.set) == {} and edits.remove == []


def test_valid_edits_load_as_written() -> None:
    config = HeadersConfig.model_validate(
        {
            "request": {"set": {"X-Tenant": "acme", "x-empty": ""}, "remove": ["Cookie"]},
            "response": {"set": {"Strict-Transport-Security": "max-age=63072000"}},
        }
    )
    assert dict(config.request.set) == {"X-Tenant": "acme", "x-empty": ""}
    assert config.request.remove == ["Cookie"]
    assert dict(config.response.set) == {"Strict-Transport-Security": "max-age=63072000"}


@pytest.mark.parametrize("name", sorted(FRAMING_HEADERS))
@pytest.mark.parametrize("side", ["request", "response"])
def test_framing_headers_cannot_be_set(side: str, name: str) -> None:
    for spelling in (name, name.upper(), name.title()):
        assert refused({side: {"set": {spelling: "1"}}}) == [
            (
                f"plugins.headers.{side}.set",
                f"{spelling}: framing headers are managed by the gateway",
            )
        ]


@pytest.mark.parametrize("name", sorted(FRAMING_HEADERS))
@pytest.mark.parametrize("side", ["request", "response"])
def test_framing_headers_cannot_be_removed(side: str, name: str) -> None:
    assert refused({side: {"remove": ["X-Ok", name.title()]}}) == [
        (
            f"plugins.headers.{side}.remove",
            f"{name.title()}: framing headers are managed by the gateway",
        )
    ]


def test_framing_headers_include_the_smuggling_vectors() -> None:
    assert {"content-length", "transfer-encoding", "connection", "te", "upgrade"} <= FRAMING_HEADERS


@pytest.mark.parametrize(
    "value",
    ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b", "\r\n"],
)
@pytest.mark.parametrize("side", ["request", "response"])
def test_values_with_cr_lf_or_nul_are_refused(side: str, value: str) -> None:
    assert refused({side: {"set": {"X-A": value}}}) == [
        (f"plugins.headers.{side}.set", "X-A: a header value cannot contain CR, LF or NUL")
    ]


@pytest.mark.parametrize("value", ["\u20ac100", "\u65e5\u672c"])
def test_values_outside_latin1_are_refused(value: str) -> None:
    assert refused({"request": {"set": {"X-A": value}}}) == [
        ("plugins.headers.request.set", "X-A: a header value must be Latin-1 text")
    ]


@pytest.mark.parametrize("value", ["caf\u00e9", "a\tb", "  spaced  ", '"quoted", ;=/'])
def test_latin1_tabs_and_punctuation_are_allowed_in_values(value: str) -> None:
    config = HeadersConfig.model_validate({"request": {"set": {"X-A": value}}})
    assert config.request.set["X-A"] == value


@pytest.mark.parametrize(
    "name", ["Bad Name", "bad:name", "", "X-\u00e9", "a\r\nb", "(x)", "a/b", "x@y"]
)
def test_bad_header_names_are_refused_in_set(name: str) -> None:
    assert refused({"request": {"set": {name: "v"}}}) == [
        (f"plugins.headers.request.set.{name}", f"{name!r} is not a valid HTTP header name")
    ]


@pytest.mark.parametrize("name", ["[x]", "a[0]"])
def test_error_path_keeps_a_header_name_with_brackets(name: str) -> None:
    config = Config.model_validate({"plugins": {"headers": {"request": {"set": {name: "v"}}}}})
    with pytest.raises(RulesError) as caught:
        resolve_rules(config)
    assert caught.value.problems == [
        (f"plugins.headers.request.set.{name}", f"{name!r} is not a valid HTTP header name")
    ]


@pytest.mark.parametrize("name", ["Bad Name", "bad:name", ""])
def test_bad_header_names_are_refused_in_remove_at_their_index(name: str) -> None:
    assert refused({"response": {"remove": ["X-Ok", name]}}) == [
        ("plugins.headers.response.remove[1]", f"{name!r} is not a valid HTTP header name")
    ]


@pytest.mark.parametrize("name", ["X-Request-Id", "x_underscore", "!#$%&'*+.^_`|~", "A1"])
def test_rfc9110_token_names_are_allowed(name: str) -> None:
    HeadersConfig.model_validate({"request": {"set": {name: "v"}, "remove": [name]}})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"requests": {}}, ("plugins.headers.requests", "unknown key (did you mean 'request'?)")),
        (
            {"request": {"sett": {}}},
            ("plugins.headers.request.sett", "unknown key (did you mean 'set'?)"),
        ),
        (
            {"response": {"delete": []}},
            ("plugins.headers.response.delete", "unknown key"),
        ),
    ],
)
def test_unknown_keys_are_refused_with_a_hint(
    data: dict[str, Any], problem: tuple[str, str]
) -> None:
    assert refused(data) == [problem]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"request": {"set": ["X-A"]}}, "plugins.headers.request.set"),
        ({"request": {"remove": "X-A"}}, "plugins.headers.request.remove"),
        ({"request": {"set": {"X-A": 1}}}, "plugins.headers.request.set.X-A"),
        ({"response": []}, "plugins.headers.response"),
    ],
)
def test_wrong_types_are_refused_at_their_path(data: dict[str, Any], path: str) -> None:
    assert [p for p, _ in refused(data)] == [path]


def test_problems_on_both_sides_are_reported_together() -> None:
    paths = [
        path
        for path, _ in refused(
            {
                "request": {"set": {"Content-Length": "1"}, "remove": ["bad name"]},
                "response": {"set": {"X-A": "a\nb"}, "remove": ["Transfer-Encoding"]},
            }
        )
    ]
    assert paths == [
        "plugins.headers.request.set",
        "plugins.headers.request.remove[0]",
        "plugins.headers.response.set",
        "plugins.headers.response.remove",
    ]


def test_config_is_frozen() -> None:
    config = HeadersConfig.model_validate({})
    with pytest.raises(ValidationError):
        config.request = config.response
