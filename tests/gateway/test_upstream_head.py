"""forwarding.upstream_head: a plugin's edit of a header the gateway sets itself (Host,
X-Forwarded-*, X-Request-Id) replaces the gateway's value, never doubles it; other edits leave
the gateway's headers alone (RequestContext.edits_own tells the two apart)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bastion.gateway.context import GATEWAY_OWN, RequestContext
from bastion.gateway.forwarding import upstream_head
from tests.gateway.harness import wire

CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""
HEAD = b"GET /x?q=1 HTTP/1.1\r\nHost: client.example\r\nX-Custom: c\r\nAuthorization: t\r\n\r\n"
Edit = Callable[[RequestContext], None]


def _head(edit: Edit) -> tuple[RequestContext, list[bytes]]:
    async def scenario() -> tuple[RequestContext, bytes]:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(HEAD)
        ex = wired.client.active
        assert ex is not None and ex.runtime is not None
        edit(ex)
        head = upstream_head(
            ex, ex.names, wired.pool, ex.raw_query, framing=b"", preserve_host=False,
            trusted_peer=False, upgrade=False, rule=ex.runtime.forward_rule,
        )  # fmt: skip
        return ex, head

    ex, head = asyncio.run(scenario())
    assert head.startswith(b"GET /x?q=1 HTTP/1.1\r\n") and head.endswith(b"\r\n\r\n")
    return ex, head.split(b"\r\n")[1:-2]


def _names(lines: list[bytes]) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines]


def test_no_edit_sends_the_gateways_own_headers_once() -> None:
    ex, lines = _head(lambda ctx: None)
    assert not ex.edits_own
    names = _names(lines)
    assert sorted(names) == sorted(
        [b"x-custom", b"authorization", b"host", b"x-forwarded-for", b"x-forwarded-proto",
         b"x-request-id", b"x-forwarded-host"]
    )  # fmt: skip
    assert b"Host: 127.0.0.1:2" in lines and b"X-Forwarded-Host: client.example" in lines


@pytest.mark.parametrize(
    ("edit", "own"),
    [
        (lambda ctx: ctx.set_upstream_header("X-Mse-Consumer", "alice"), False),
        (lambda ctx: ctx.remove_upstream_header("Authorization"), False),
        (lambda ctx: ctx.set_upstream_header("X-Request-Id", "mine"), True),
        (lambda ctx: ctx.set_upstream_header("host", "plugin.example"), True),
        (lambda ctx: ctx.remove_upstream_header("X-Forwarded-Host"), True),
        (lambda ctx: ctx.remove_upstream_header("X-FORWARDED-FOR"), True),
    ],
)
def test_an_edit_of_a_gateway_header_replaces_it_and_others_keep_them(
    edit: Edit, own: bool
) -> None:
    ex, lines = _head(edit)
    assert ex.edits_own is own
    names = _names(lines)
    for name in GATEWAY_OWN:
        removed = ex.upstream_remove is not None and name in ex.upstream_remove
        assert names.count(name) == (0 if removed else 1), (name, lines)
    for raw, value in ex.headers_set_upstream().values():
        assert b"%b: %b" % (raw, value) in lines
    assert (b"Authorization: t" in lines) == (ex.upstream_remove != {b"authorization"})


@pytest.mark.parametrize("name", ["X-Custom", "x-custom", "Authorization"])
def test_a_header_a_plugin_sets_replaces_the_clients(name: str) -> None:
    _, lines = _head(lambda ctx: ctx.set_upstream_header(name, "from-plugin"))
    names = _names(lines)
    assert names.count(name.lower().encode()) == 1
    assert b"%b: from-plugin" % name.encode() in lines


def test_a_header_a_plugin_sets_that_the_client_did_not_send_is_added() -> None:
    _, lines = _head(lambda ctx: ctx.set_upstream_header("X-Mse-Consumer", "alice"))
    assert b"X-Custom: c" in lines and b"Authorization: t" in lines
    assert b"X-Mse-Consumer: alice" in lines


SET, REMOVE = "set", "remove"


@pytest.mark.parametrize(
    "edits",
    [
        [(SET, "X-Mse-Consumer", "a")],
        [(SET, "X-Mse-Consumer", "a"), (SET, "x-mse-consumer", "b")],
        [(SET, "X-Mse-Consumer", "a"), (SET, "X-Other", "o")],
        [(SET, "X-Mse-Consumer", "a"), (SET, "X-Other", "o"), (SET, "X-MSE-CONSUMER", "b")],
        [(SET, "X-Mse-Consumer", "a"), (REMOVE, "X-Mse-Consumer", "")],
        [(SET, "X-Mse-Consumer", "a"), (REMOVE, "x-mse-consumer", ""), (SET, "X-Other", "o")],
        [(SET, "X-A", "a"), (SET, "X-B", "b"), (REMOVE, "X-A", ""), (SET, "X-A", "again")],
        [(REMOVE, "X-Custom", ""), (SET, "X-Custom", "mine")],
        [(SET, "X-Custom", "mine"), (SET, "Authorization", "t2")],
        [(SET, "Host", "h1"), (SET, "X-Other", "o"), (SET, "host", "h2")],
        [(SET, "X-Request-Id", "r1"), (REMOVE, "X-Request-Id", "")],
        [(SET, "X-Other", "o"), (SET, "Authorization", "t2"), (REMOVE, "X-Other", "")],
    ],
)
def test_a_sequence_of_edits_sends_what_the_last_of_each_says(
    edits: list[tuple[str, str, str]],
) -> None:
    """Set and remove in any order and spelling: the first header set is kept apart from the
    others (RequestContext.set_low); what goes upstream is the same as with one dict."""
    expected: dict[bytes, tuple[bytes, bytes]] = {}  # the model: one dict, as the API says
    removed: set[bytes] = set()

    def edit(ctx: RequestContext) -> None:
        for verb, name, value in edits:
            low = name.lower().encode()
            if verb == SET:
                ctx.set_upstream_header(name, value)
                expected[low] = (name.encode(), value.encode())
            else:
                ctx.remove_upstream_header(name)
                expected.pop(low, None)
                removed.add(low)

    ex, lines = _head(edit)
    assert ex.headers_set_upstream() == expected
    names = _names(lines)
    for low, (raw, value) in expected.items():
        assert names.count(low) == 1 and b"%b: %b" % (raw, value) in lines, (low, lines)
    for low in removed - expected.keys():
        assert low not in names, (low, lines)
    client = {b"x-custom": b"X-Custom: c", b"authorization": b"Authorization: t"}
    for low, line in client.items():
        kept = low not in expected and low not in removed
        assert (line in lines) is kept, (low, lines)
    for low in GATEWAY_OWN - expected.keys() - removed:
        assert names.count(low) == 1, (low, lines)
