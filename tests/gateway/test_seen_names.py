"""The positional memos: a client connection remembers its last request's header names and
method (connection.py, ClientConnection.seen, method_bytes), a pool its service's last
response's header names (pipeline.on_response_head, UpstreamPool.seen), each a
forwarding.PlaceMemo. Whatever the order of heads on one connection, each must be read as a
fresh connection would read it."""

from __future__ import annotations

import asyncio

import pytest

from bastion.gateway.exchange import Exchange
from bastion.gateway.forwarding import NAME_KEPT, SEEN_KEPT
from bastion.gateway.request_head import FRAMING_HEADERS
from tests.gateway.harness import Wired, wire

CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""
LONG = b"X-" + b"n" * NAME_KEPT  # longer than a memo keeps
MANY = [b"X-Many-%d" % i for i in range(SEEN_KEPT + 3)]

#: header names of successive requests on one connection (each also gets Host: first)
REQUESTS: list[list[bytes]] = [
    [b"Accept", b"Content-Length", b"X-A"],
    [b"Accept", b"Content-Length", b"X-A"],  # the same: every name from the memo
    [b"Accept", b"Content-Type", b"X-A"],  # the same length, not framing
    [b"accept", b"content-length", b"x-a"],  # other spellings at the same places
    [b"Accept"],  # fewer
    [b"Accept", b"Expect", b"X-B", b"X-C", LONG],  # more, one too long to keep
    [b"Accept", b"Expect", b"X-B", b"X-C", LONG],
    MANY,  # more than the memo keeps
    MANY,
    [b"Accept", b"Content-Length", b"X-A"],
]


def _value(name: bytes) -> bytes:
    low = name.lower()
    if low == b"content-length":
        return b"0"
    if low == b"expect":
        return b"100-continue"
    return b"v-" + low


async def _exchange(wired: Wired, names: list[bytes]) -> tuple[Exchange, bytes]:
    lines = [b"GET /x HTTP/1.1", b"Host: t", *(b"%b: %b" % (n, _value(n)) for n in names)]
    before = len(wired.upstream_transport.out)
    wired.client.data_received(b"\r\n".join(lines) + b"\r\n\r\n")
    ex = wired.client.active
    assert ex is not None
    sent = b"".join(wired.upstream_transport.out[before:])
    wired.upstream.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")  # frees the connection
    return ex, sent


def test_a_connection_reads_each_request_as_a_fresh_one_would() -> None:
    async def scenario() -> None:
        wired = await wire(CONFIG, "up")
        for names in REQUESTS:
            ex, sent = await _exchange(wired, names)
            expected = [b"host", *(n.lower() for n in names)]
            assert ex.names == expected, names
            framing = [(n, v) for n, v in zip(ex.names, (v for _, v in ex.headers), strict=True)]
            assert ex.framing == [(n, v) for n, v in framing if n in FRAMING_HEADERS], names
            assert ex.expect_continue == (b"Expect" in names)
            for name in names:
                if name.lower() not in (b"content-length", b"expect"):
                    assert b"\r\n%b: %b\r\n" % (name, _value(name)) in sent, name
        seen = wired.client.seen.names
        assert len(seen) <= SEEN_KEPT and all(len(n) <= NAME_KEPT for n in seen)
        assert seen[:4] == [b"Host", b"Accept", b"Content-Length", b"X-A"]

    asyncio.run(scenario())


#: successive response heads from one service; (name, dropped by the gateway)
RESPONSES: list[list[tuple[bytes, bool]]] = [
    [(b"Server", False), (b"Keep-Alive", True), (b"X-A", False)],
    [(b"Server", False), (b"Keep-Alive", True), (b"X-A", False)],
    [(b"Server", False), (b"Keep-Alivf", False), (b"X-A", False)],  # same length, relayed
    [(b"server", False), (b"keep-alive", True), (b"X-Request-Id", True)],
    [(b"Server", False)],
    [(b"Server", False), (b"TE", True), (b"Trailer", True), (LONG, False)],
    [(b"Server", False), (b"TE", True), (b"Trailer", True), (LONG, False)],
    [(name, False) for name in MANY],
    [(b"Server", False), (b"Keep-Alive", True), (b"X-A", False)],
]


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_pool_reads_each_response_as_a_fresh_one_would(rounds: int) -> None:
    async def scenario() -> None:
        wired = await wire(CONFIG, "up")
        for heads in RESPONSES * rounds:
            before = len(wired.client_transport.out)
            wired.client.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            lines = [b"HTTP/1.1 200 OK", *(b"%b: v-%b" % (n, n.lower()) for n, _ in heads)]
            wired.upstream.data_received(
                b"\r\n".join([*lines, b"Content-Length: 2"]) + b"\r\n\r\nok"
            )
            answer = b"".join(wired.client_transport.out[before:])
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok")
            for name, dropped in heads:
                line = b"\r\n%b: v-%b\r\n" % (name, name.lower())
                assert (line not in answer) == dropped, (name, answer)
            assert answer.count(b"Content-Length: 2\r\n") == 1
        pool = wired.pool
        assert len(pool.seen.names) == len(pool.seen.values) <= SEEN_KEPT

    asyncio.run(scenario())


def test_a_connection_reads_each_method_as_a_fresh_one_would() -> None:
    """ClientConnection.method_bytes/method_text: the last method, remembered as text."""
    methods = ["GET", "GET", "POST", "HEAD", "GET", "DELETE", "DELETE", "GET", "OPTIONS"]

    async def scenario() -> list[str]:
        wired = await wire(CONFIG, "up")
        seen = []
        for method in methods:
            head = b"%b /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" % method.encode()
            before = len(wired.upstream_transport.out)
            wired.client.data_received(head)
            ex = wired.client.active
            assert ex is not None
            seen.append(ex.method)
            assert wired.upstream_transport.out[before].startswith(b"%b /x " % method.encode())
            wired.upstream.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
        return seen

    assert asyncio.run(scenario()) == methods


def test_a_name_too_long_to_keep_leaves_its_place_empty_and_the_rest_kept() -> None:
    async def scenario() -> list[bytes]:
        wired = await wire(CONFIG, "up")
        for _ in range(2):
            ex, _ = await _exchange(wired, [LONG, b"Accept", b"X-A"])
            assert ex.names == [b"host", LONG.lower(), b"accept", b"x-a"]
        return wired.client.seen.names

    assert asyncio.run(scenario()) == [b"Host", b"", b"Accept", b"X-A"]


def test_an_empty_header_name_never_reaches_the_memo() -> None:
    """The memo marks a name it does not keep with b"": llhttp refuses an empty name."""

    async def scenario() -> bytes:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n")
        return b"".join(wired.client_transport.out)

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 400 ")
