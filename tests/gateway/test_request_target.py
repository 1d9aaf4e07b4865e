"""pipeline._route's reading of the request target: path, query and what goes upstream, for
the common origin-form and for the forms it hands to _split_target (absolute-form, a fragment,
bytes outside ASCII)."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.harness import wire

CONFIG = """
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""


def forward(target: bytes) -> tuple[bytes, str, str, bytes]:
    """(the request line sent upstream, ctx.path, ctx.query, ctx.raw_query)."""

    async def scenario() -> tuple[bytes, str, str, bytes]:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        ex = wired.client.active
        assert ex is not None, wired.client_transport.out
        line = wired.upstream_transport.out[0].split(b"\r\n")[0]
        return line, ex.path, ex.query, ex.raw_query

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("target", "line", "path", "query"),
    [
        (b"/a/b", b"GET /a/b HTTP/1.1", "/a/b", ""),
        (b"/a?x=1&y=%20", b"GET /a?x=1&y=%20 HTTP/1.1", "/a", "x=1&y=%20"),
        (b"/a?", b"GET /a HTTP/1.1", "/a", ""),
        (b"/?", b"GET / HTTP/1.1", "/", ""),
        (b"/a?b?c", b"GET /a?b?c HTTP/1.1", "/a", "b?c"),
        (b"/a/../b?c", b"GET /b?c HTTP/1.1", "/b", "c"),
        (b"/%61?%61", b"GET /a?%61 HTTP/1.1", "/a", "%61"),  # the query is never normalized
        # a fragment is not part of the target (RFC 9112 §3.2): dropped from the path
        (b"/a#frag", b"GET /a HTTP/1.1", "/a", ""),
        (b"/a?x#frag", b"GET /a?x#frag HTTP/1.1", "/a", "x#frag"),
        (b"http://h.example/p?q=1", b"GET /p?q=1 HTTP/1.1", "/p", "q=1"),
    ],
)
def test_path_query_and_upstream_line(target: bytes, line: bytes, path: str, query: str) -> None:
    sent, ctx_path, ctx_query, raw_query = forward(target)
    assert (sent, ctx_path, ctx_query) == (line, path, query)
    assert raw_query == query.encode("latin-1")


@pytest.mark.parametrize("target", [b"/caf\xc3\xa9", b"/a?q=\xc3\xa9", b"/\xff", b"/a?q=\xff"])
def test_bytes_outside_ascii_are_refused_by_the_parser(target: bytes) -> None:
    """llhttp answers them 400 before routing; _route still reads them byte for byte (its
    fallback) should the parser ever let one through."""

    async def scenario() -> bytes:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wired.upstream_transport.out == []
        return b"".join(wired.client_transport.out)

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 400 ")
