"""connection.py: the HTTP version read off a chunk's first request line, and the lower-case
header names an exchange is looked up by, in every spelling."""

from __future__ import annotations

import asyncio

import pytest

from bastion.gateway.connection import _LOWER, request_line_version
from bastion.gateway.context import KNOWN_NAMES, lookup_key
from bastion.gateway.exchange import Exchange
from bastion.gateway.request_head import FRAMING_HEADERS
from tests.gateway.harness import wire

CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "1.1"),
        (b"POST /x?y=1 HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "1.0"),
        (b"GET / HTTP/1.1\r\n", "1.1"),
        # llhttp is asked: the line is not whole yet, or not one of the two versions served
        (b"GET / HTTP/1.1", ""),
        (b"GET / HTTP/1.1\r", ""),
        (b"GET / HTTP/2.0\r\n\r\n", ""),
        (b"GET / HTTP/1.2\r\n\r\n", ""),
        (b"GET / http/1.1\r\n\r\n", ""),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", ""),  # an empty line first (llhttp skips it)
        (b"", ""),
        # a bare LF ends the request line: the CRLF after it ends a header, not the line
        (b"GET / HTTP/1.0\nX: a HTTP/1.1\r\n\r\n", ""),
        (b"GET / HTTP/1.0\nX: a HTTP/1.0\r\n\r\n", ""),
    ],
)
def test_request_line_version(data: bytes, version: str) -> None:
    assert request_line_version(data) == version


def test_the_common_names_table_answers_what_lower_would() -> None:
    assert all(low == name.lower() for name, (low, _) in _LOWER.items())
    assert all(framing is (low in FRAMING_HEADERS) for low, framing in _LOWER.values())
    assert b"host" in _LOWER and b"Host" in _LOWER and _LOWER[b"Host"] == (b"host", True)
    # one object per name, the one plugins get from lookup_key (KNOWN_NAMES)
    assert all(low is KNOWN_NAMES[name] for name, (low, _) in _LOWER.items())
    assert _LOWER[b"X-Real-IP"][0] is _LOWER[b"x-real-ip"][0]


@pytest.mark.parametrize("name", ["Authorization", "authorization", "X-Request-Id", "X-Custom"])
def test_a_plugins_lookup_key_is_the_requests_own(name: str) -> None:
    """A look-up key made at config load finds the header in every spelling; a common name's is
    the very object the request's `lookup` is keyed by (matched by identity, not by bytes)."""
    key = lookup_key(name)
    assert key == name.lower().encode()

    async def scenario(spelling: bytes) -> Exchange:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n%b: v\r\n\r\n" % spelling)
        assert wired.client.active is not None
        return wired.client.active

    for spelling in (name.encode(), name.upper().encode(), name.swapcase().encode()):
        ex = asyncio.run(scenario(spelling))
        assert ex.lookup.get(key) == b"v"
        (stored,) = [k for k in ex.lookup if k == key]
        assert (stored is key) is (key in KNOWN_NAMES.values()), spelling


@pytest.mark.parametrize(
    "name", [b"Host", b"host", b"HOST", b"hOsT", b"X-Custom", b"x-custom", b"X-CUSTOM"]
)
def test_header_names_are_looked_up_in_lower_case_and_forwarded_as_sent(name: bytes) -> None:
    async def scenario() -> tuple[Exchange, bytes]:
        wired = await wire(CONFIG, "up")
        other = b"X-Custom: 1" if name.lower() == b"host" else b"Host: t"
        wired.client.data_received(b"GET /x HTTP/1.1\r\n%b\r\n%b: v\r\n\r\n" % (other, name))
        ex = wired.client.active
        assert ex is not None
        return ex, b"".join(wired.upstream_transport.out)

    ex, sent = asyncio.run(scenario())
    low = name.lower()
    assert ex.lookup[low] == b"v"
    assert ex.names == [name.lower() for name, _ in ex.headers] and low in ex.names
    if low == b"host":
        assert ex.host == "v"  # Host is the gateway's to send upstream: the pool's, by default
    else:
        assert b"\r\n%b: v\r\n" % name in sent  # an end-to-end header keeps its spelling


@pytest.mark.parametrize(
    ("lines", "count"),
    [
        ([b"Authorization: a"], 1),
        ([b"Authorization: a", b"authorization: b"], 2),
        ([b"AUTHORIZATION: a", b"Authorization: b", b"aUtHoRiZaTiOn: c"], 3),
        ([b"X-Other: a"], 0),
    ],
)
def test_header_count_counts_every_spelling(lines: list[bytes], count: int) -> None:
    async def scenario() -> Exchange:
        wired = await wire(CONFIG, "up")
        head = b"\r\n".join([b"GET /x HTTP/1.1", b"Host: t", *lines])
        wired.client.data_received(head + b"\r\n\r\n")
        assert wired.client.active is not None
        return wired.client.active

    ex = asyncio.run(scenario())
    assert ex.header_count(b"authorization") == count
    assert ex.header_count(b"host") == 1
