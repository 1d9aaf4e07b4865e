"""Content-Length response bodies past the first read are counted, not parsed (upstream.py):
the client gets exactly the declared bytes, in any split, and a confused upstream is dropped."""

from __future__ import annotations

import asyncio

import pytest

from bastion.gateway.upstream import UpstreamConnection, _content_length, parse_length
from tests.gateway.harness import wire

CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""
BODY = bytes(range(256)) * 40  # 10,240 bytes


def exchange(pieces: list[bytes], requests: int = 1) -> tuple[bytes, UpstreamConnection, bool]:
    """Send `requests` GETs through one pooled upstream connection that answers with `pieces`
    (all the answers' bytes, split as given); (what the client got, the connection, whether
    the pool still holds it)."""

    async def scenario() -> tuple[bytes, UpstreamConnection, bool]:
        wired = await wire(CONFIG, "up")
        for _ in range(requests):
            wired.client.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        for piece in pieces:
            wired.upstream.data_received(piece)
            await asyncio.sleep(0)
        got = b"".join(wired.client_transport.out)
        return got, wired.upstream, wired.upstream in wired.pool.idle

    return asyncio.run(scenario())


def response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body + extra


@pytest.mark.parametrize("first", [0, 1, 5, 100, len(BODY) - 1, len(BODY)])
@pytest.mark.parametrize("step", [1, 7, 4096, 100_000])
def test_the_client_gets_exactly_the_body_in_any_split(first: int, step: int) -> None:
    raw = response(BODY)
    head_end = raw.index(b"\r\n\r\n") + 4
    pieces = [raw[: head_end + first]]
    rest = raw[head_end + first :]
    pieces += [rest[i : i + step] for i in range(0, len(rest), step)]
    got, upstream, pooled = exchange(pieces)
    assert got.endswith(b"\r\n\r\n" + BODY)
    assert b"Content-Length: 10240\r\n" in got
    assert pooled and upstream.open  # a clean end: the connection is reused


def test_bytes_after_a_counted_body_drop_the_connection() -> None:
    raw = response(BODY)
    head_end = raw.index(b"\r\n\r\n") + 4
    pieces = [raw[: head_end + 10], raw[head_end + 10 :] + b"HTTP/1.1 200 OK\r\n\r\nsmuggled"]
    got, upstream, pooled = exchange(pieces)
    assert got.endswith(BODY) and b"smuggled" not in got
    assert not pooled and not upstream.open


def test_the_next_response_on_the_connection_is_parsed_afresh() -> None:
    first, second = response(BODY), response(b"second answer")
    head_end = first.index(b"\r\n\r\n") + 4
    # the first body ends in the bypass; the second answer comes in its own read
    got, _, _ = exchange([first[: head_end + 3], first[head_end + 3 :], second], requests=2)
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert got.endswith(b"second answer") and BODY in got


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ([(b"Content-Length", b"12")], 12),
        ([(b"content-length", b" 0 ")], 0),
        ([(b"CONTENT-LENGTH", b"7")], 7),
        ([(b"Content-Length", b"12"), (b"content-length", b"12")], -1),  # any spelling counts
        ([(b"Content-Length", b"12"), (b"Content-Length", b"12")], -1),  # ambiguous: parse it
        ([(b"Content-Length", b"1x")], -1),
        ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"12")], -1),
        ([(b"Content-Length", b"12"), (b"Transfer-Encoding", b"chunked")], -1),
        ([(b"Server", b"x")], -1),
    ],
)
def test_only_one_plain_content_length_is_counted(
    headers: list[tuple[bytes, bytes]], length: int
) -> None:
    assert _content_length(headers) == length


def _reference_length(value: bytes) -> int:
    """What the gateway read before parse_length: strip, isdigit, int."""
    text = value.strip()
    return int(text) if text.isdigit() else -1


@pytest.mark.parametrize(
    "value",
    [
        b"", b"0", b"7", b"95", b"007", b" 12", b"12 ", b"\t12\t", b" \x0b12\x0c\r\n", b"1 2",
        b"-1", b"+1", b"1.0", b"0x10", b"\xd9\xa1", b"12a", b" ", b"99999999999999999999999",
    ],
)  # fmt: skip
def test_parse_length_reads_as_strip_isdigit_int(value: bytes) -> None:
    assert parse_length(value) == _reference_length(value)


def test_parse_length_on_every_single_byte_around_a_digit() -> None:
    for byte in range(256):
        for value in (bytes([byte]), bytes([byte]) + b"5", b"5" + bytes([byte])):
            assert parse_length(value) == _reference_length(value), value
