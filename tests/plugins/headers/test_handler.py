"""`headers` plugin behaviour: HeadersStep edits what goes upstream and what the client gets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.gateway.context import Header, RequestContext, ResponseHead
from bastion.plugins.base import PluginDeps
from bastion.plugins.headers.handler import HeadersPlugin, HeadersStep
from bastion.plugins.headers.schema import HeadersConfig


def make_ctx(headers: list[Header] | None = None) -> RequestContext:
    headers = headers if headers is not None else [(b"Host", b"example.com"), (b"X-Client", b"c")]
    return RequestContext(
        method="GET",
        path="/api",
        query="a=1",
        host="example.com",
        headers=headers,
        lookup={name.lower(): value for name, value in headers},
        client_ip="127.0.0.1",
        scheme="http",
        request_id="req-1",
        http_version="1.1",
    )


def step_for(data: dict[str, Any]) -> HeadersStep:
    plugin = HeadersPlugin(HeadersConfig.model_validate(data), PluginDeps())
    step = plugin.bind(plugin.config)
    assert isinstance(step, HeadersStep)
    return step


def run_request(step: HeadersStep, ctx: RequestContext) -> None:
    assert asyncio.run(step.on_request(ctx)) is None  # never answers the request itself


# --- bind -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [{}, {"request": {}}, {"request": {"set": {}, "remove": []}, "response": {}}],
)
def test_bind_returns_none_when_there_is_nothing_to_do(data: dict[str, Any]) -> None:
    plugin = HeadersPlugin(HeadersConfig.model_validate(data), PluginDeps())
    assert plugin.bind(plugin.config) is None


def test_bind_uses_the_rule_instead_of_the_instance_config() -> None:
    instance = HeadersConfig.model_validate({"request": {"set": {"X-Scope": "instance"}}})
    rule = HeadersConfig.model_validate({"request": {"set": {"X-Scope": "rule"}}})
    plugin = HeadersPlugin(instance, PluginDeps())
    ctx = make_ctx()
    step = plugin.bind(rule)
    assert isinstance(step, HeadersStep)
    run_request(step, ctx)
    assert ctx.headers_set_upstream() == {b"x-scope": (b"X-Scope", b"rule")}


def test_an_empty_rule_switches_the_plugin_off_there() -> None:
    instance = HeadersConfig.model_validate({"request": {"set": {"X-A": "a"}}})
    plugin = HeadersPlugin(instance, PluginDeps())
    assert plugin.bind(HeadersConfig.model_validate({})) is None


def test_step_declares_both_hooks() -> None:
    step = step_for({"request": {"set": {"X-A": "a"}}})
    assert step.handles_request and step.handles_response


# --- on_request -------------------------------------------------------------------------------


def test_request_set_replaces_upstream_headers_keeping_the_configured_case() -> None:
    ctx = make_ctx()
    run_request(step_for({"request": {"set": {"X-Tenant": "acme", "x-client": "gw"}}}), ctx)
    assert ctx.headers_set_upstream() == {
        b"x-tenant": (b"X-Tenant", b"acme"),
        b"x-client": (b"x-client", b"gw"),
    }


def test_request_remove_drops_client_headers_case_insensitively() -> None:
    ctx = make_ctx()
    run_request(step_for({"request": {"remove": ["X-CLIENT", "Cookie"]}}), ctx)
    assert ctx.upstream_remove == {b"x-client", b"cookie"}


def test_request_remove_also_cancels_what_an_earlier_plugin_set() -> None:
    ctx = make_ctx()
    ctx.set_upstream_header("X-Mse-Consumer", "alice")
    run_request(step_for({"request": {"remove": ["x-mse-consumer"]}}), ctx)
    assert ctx.headers_set_upstream() == {}
    assert ctx.upstream_remove == {b"x-mse-consumer"}


def test_request_set_wins_over_remove_of_the_same_name() -> None:
    ctx = make_ctx()
    run_request(step_for({"request": {"set": {"X-A": "new"}, "remove": ["x-a"]}}), ctx)
    assert ctx.headers_set_upstream() == {b"x-a": (b"X-A", b"new")}


def test_request_edits_never_touch_the_clients_headers() -> None:
    ctx = make_ctx()
    before = list(ctx.headers)
    run_request(step_for({"request": {"set": {"X-Client": "gw"}, "remove": ["Host"]}}), ctx)
    assert ctx.headers == before
    assert ctx.header("x-client") == "c"


def test_request_values_are_sent_as_latin1() -> None:
    ctx = make_ctx()
    run_request(step_for({"request": {"set": {"X-Name": "caf\u00e9"}}}), ctx)
    assert ctx.headers_set_upstream() == {b"x-name": (b"X-Name", b"caf\xe9")}


def test_response_only_config_leaves_the_request_alone() -> None:
    ctx = make_ctx()
    run_request(step_for({"response": {"set": {"X-Frame-Options": "DENY"}}}), ctx)
    assert ctx.headers_set_upstream() == {} and ctx.upstream_remove is None


# --- on_response ------------------------------------------------------------------------------


def respond(step: HeadersStep, headers: list[Header], status: int = 200) -> ResponseHead:
    head = ResponseHead(status, list(headers))
    step.on_response(make_ctx(), head)
    return head


UPSTREAM: list[Header] = [
    (b"Content-Type", b"text/html"),
    (b"Server", b"upstream/1.0"),
    (b"Set-Cookie", b"a=1"),
    (b"X-Powered-By", b"php"),
    (b"Set-Cookie", b"b=2"),
]


def test_response_remove_drops_every_copy_case_insensitively() -> None:
    head = respond(step_for({"response": {"remove": ["x-powered-by", "SET-COOKIE"]}}), UPSTREAM)
    assert head.headers == [(b"Content-Type", b"text/html"), (b"Server", b"upstream/1.0")]


def test_response_set_replaces_the_upstreams_value() -> None:
    head = respond(step_for({"response": {"set": {"server": "bastion"}}}), UPSTREAM)
    assert head.headers == [
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1"),
        (b"X-Powered-By", b"php"),
        (b"Set-Cookie", b"b=2"),
        (b"server", b"bastion"),
    ]


def test_response_set_adds_a_missing_header() -> None:
    step = step_for({"response": {"set": {"Strict-Transport-Security": "max-age=63072000"}}})
    head = respond(step, [(b"Content-Type", b"text/plain")])
    assert head.headers == [
        (b"Content-Type", b"text/plain"),
        (b"Strict-Transport-Security", b"max-age=63072000"),
    ]


def test_response_set_and_remove_together() -> None:
    step = step_for({"response": {"set": {"X-Frame-Options": "DENY"}, "remove": ["Server"]}})
    head = respond(step, [(b"server", b"nginx"), (b"x-frame-options", b"ALLOW")], status=404)
    assert head.status == 404
    assert head.headers == [(b"X-Frame-Options", b"DENY")]


def test_request_only_config_leaves_the_response_alone() -> None:
    head = respond(step_for({"request": {"set": {"X-A": "a"}}}), UPSTREAM)
    assert head.headers == UPSTREAM


def test_a_step_serves_many_requests_the_same_way() -> None:
    step = step_for({"request": {"set": {"X-A": "a"}}, "response": {"set": {"X-B": "b"}}})
    for _ in range(3):
        ctx = make_ctx()
        run_request(step, ctx)
        assert ctx.headers_set_upstream() == {b"x-a": (b"X-A", b"a")}
        assert respond(step, []).headers == [(b"X-B", b"b")]
