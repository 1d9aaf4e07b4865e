"""HTTP/1.x framing through `bastion run`, over raw sockets: bodies both ways, HEAD / 1xx / 204 /
304, pipelining, HTTP/1.0, keep-alive, smuggling refusal, malformed input, slow clients.

`tests/e2e/raw_upstream.py` records the exact bytes that reach the upstream. No test asserts a
duration: every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway, run_python
from tests.e2e.raw_upstream import RawConn, Resp, chunked, get, parse_head, read_records
from tests.e2e.upstream_app import CHUNKED_PIECES

RAW_UPSTREAM = Path(__file__).with_name("raw_upstream.py")
LIMITS = {
    "max_request_body": 100_000,
    "max_header_size": 8192,
    "max_header_count": 30,
    "client_timeout": 2,
    "header_timeout": 1,
    "keepalive_timeout": 1,
}


@pytest.fixture(scope="module")
def raw_record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    record = tmp_path_factory.mktemp("raw") / "record.jsonl"
    port = free_port()
    with run_python(RAW_UPSTREAM, "--port", str(port), "--record", str(record), port=port):
        yield port, record


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream_port: int, raw_record: tuple[int, Path]
) -> Iterator[Gateway]:
    config = gateway_config(
        upstream_port,
        free_port(),
        limits=LIMITS,
        services=[
            {"name": "backend", "url": f"http://127.0.0.1:{upstream_port}"},
            {"name": "raw", "url": f"http://127.0.0.1:{raw_record[0]}"},
        ],
        routes=[
            {"name": "raw", "path": "/raw/", "service": "raw"},
            {"name": "all", "path": "/", "service": "backend"},
        ],
    )
    with run_gateway(tmp_path_factory.mktemp("gw"), config) as gateway:
        yield gateway


def records_for(record: Path, marker: str) -> list[dict[str, Any]]:
    return [r for r in read_records(record) if marker in r["head"].split("\r\n", 1)[0]]


def marker() -> str:
    return uuid.uuid4().hex[:12]


def assert_serving(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get("/echo/still-serving"))
        assert conn.final().status == 200


# --- bodies both ways ------------------------------------------------------------------------


def test_content_length_request_body_reaches_upstream_intact(gw: Gateway) -> None:
    body = os.urandom(60_000)
    with RawConn(gw.port) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 60000\r\n\r\n" + body)
        resp = conn.final("POST")
    assert resp.status == 200
    assert resp.json() == {"bytes": 60_000, "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_request_body_reaches_upstream_intact(gw: Gateway) -> None:
    pieces = [os.urandom(n) for n in (1, 10_000, 333, 40_000)]
    with RawConn(gw.port) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.send(chunked(*pieces))
        resp = conn.final("POST")
    body = b"".join(pieces)
    assert resp.status == 200
    assert resp.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_request_body_is_forwarded_as_one_request(
    gw: Gateway, raw_record: tuple[int, Path]
) -> None:
    m = marker()
    with RawConn(gw.port) as conn:
        conn.send(
            f"PUT /raw/{m} HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        conn.send(chunked(b"hello ", b"chunked ", b"world"))
        assert conn.final("PUT").status == 200
    [rec] = records_for(raw_record[1], m)
    assert rec["decoded"] == b"hello chunked world"


@pytest.mark.parametrize("path", ["/big?bytes=300000", "/big-cl?bytes=300000"])
def test_large_response_body_reaches_client_intact(gw: Gateway, path: str) -> None:
    from tests.e2e.upstream_app import pattern_bytes

    with RawConn(gw.port) as conn:
        conn.send(get(path))
        resp = conn.final()
    assert resp.status == 200
    assert resp.body == pattern_bytes(300_000)
    if "big-cl" in path:
        assert resp.header("content-length") == "300000"


def test_chunked_response_reaches_client_intact(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get("/chunked"))
        resp = conn.final()
    assert resp.status == 200
    assert resp.body == b"".join(CHUNKED_PIECES)


def test_response_is_streamed_not_buffered(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get("/drip?chunks=3&interval=1"))
        seen = conn.peek_until(b"drip 0")
        assert b"drip 2" not in seen  # the upstream sends it 2 s after the first chunk
        resp = conn.final()
    assert resp.body == b"drip 0\ndrip 1\ndrip 2\n"


# --- responses without a body ------------------------------------------------------------------


def test_head_has_headers_only_and_connection_stays_usable(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(b"HEAD /head HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        head = conn.final("HEAD")
        conn.send(get("/head"))
        full = conn.final()  # a stray HEAD body would be read here as a broken status line
    assert head.status == 200
    assert head.header("content-length") == "1234"
    assert full.status == 200
    assert full.body == b"h" * 1234


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(gw: Gateway, code: int) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get(f"/status/{code}") + get("/echo/after"))
        first = conn.final()
        second = conn.final()
    assert first.status == code
    assert first.header("transfer-encoding") is None
    assert first.header("content-length") in (None, "0")
    assert second.status == 200
    assert second.json()["path"] == "/echo/after"


def test_expect_100_continue(gw: Gateway) -> None:
    with RawConn(gw.port, timeout=5) as conn:
        conn.send(
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 11\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = conn.response("POST")  # before any body byte is sent
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        conn.send(b"hello world")
        final = conn.final("POST")
    assert final.status == 200
    assert final.json()["bytes"] == 11


# --- connections -------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get("/slow?seconds=0.3") + get("/echo/p2") + get("/echo/p3"))
        first, second, third = conn.final(), conn.final(), conn.final()
    assert (first.status, first.body) == (200, b"slow done")
    assert [second.json()["path"], third.json()["path"]] == ["/echo/p2", "/echo/p3"]


def test_pipelined_post_between_gets(gw: Gateway) -> None:
    post = b"POST /echo/p2 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nabcde"
    with RawConn(gw.port) as conn:
        conn.send(get("/echo/p1") + post + get("/echo/p3"))
        bodies = [conn.final().json() for _ in range(3)]
    assert [b["path"] for b in bodies] == ["/echo/p1", "/echo/p2", "/echo/p3"]
    assert [b["body_len"] for b in bodies] == [0, 5, 0]


def test_keep_alive_serves_several_requests_on_one_connection(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        for i in range(5):
            conn.send(get(f"/echo/ka{i}"))
            resp = conn.final()
            assert resp.status == 200
            assert resp.json()["path"] == f"/echo/ka{i}"


def test_http10_is_closed_after_the_response(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(b"GET /echo/ten HTTP/1.0\r\n\r\n")
        resp = conn.final()
        assert resp.status == 200
        assert resp.json()["path"] == "/echo/ten"
        assert conn.closed_by_peer()


def test_http10_keep_alive(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        for i in range(2):
            conn.send(f"GET /echo/ten{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            resp = conn.final()
            assert resp.status == 200
            assert resp.json()["path"] == f"/echo/ten{i}"
            assert resp.header("transfer-encoding") is None


def test_a_pipelined_http10_request_is_judged_as_http10(gw: Gateway) -> None:
    """The second request of a chunk gets its version from llhttp, not from the chunk's first
    request line: HTTP/1.0 with Transfer-Encoding is refused behind an HTTP/1.1 request."""
    smuggled = b"POST /echo/te10 HTTP/1.0\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    with RawConn(gw.port) as conn:
        conn.send(get("/echo/first") + smuggled + b"0\r\n\r\n")
        first = conn.final()
        assert first.status == 200 and first.json()["path"] == "/echo/first"
        assert conn.final().status == 400


def test_http10_client_gets_a_chunked_upstream_body_unchunked(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(b"GET /chunked HTTP/1.0\r\nHost: gw.test\r\n\r\n")
        resp = conn.final()
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.body == b"".join(CHUNKED_PIECES)


def test_idle_keep_alive_connection_is_closed(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(get("/echo/idle"))
        assert conn.final().status == 200
        assert conn.closed_by_peer()  # keepalive_timeout is 1 s, the socket timeout 10 s


def test_slowloris_is_cut_off_and_others_are_served(gw: Gateway) -> None:
    with RawConn(gw.port) as slow:
        slow.send(b"GET /echo/slow HTTP/1.1\r\nHost: gw.test\r\n")
        assert_serving(gw)
        cut_off = False
        for i in range(40):  # one header line every 0.25 s, never the blank line
            try:
                slow.send(f"X-Drip-{i}: a\r\n".encode())
            except OSError:
                cut_off = True
                break
            slow.sock.settimeout(0.25)
            try:
                data = slow.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            slow.buf += data
            cut_off = True
            break
        assert cut_off, "the gateway kept a half-sent request head open for 10 s"
        if slow.buf:
            slow.sock.settimeout(5)
            resp = slow.final()
            assert resp.status == 408
            assert resp.json()["error"] == "request_timeout"
    assert_serving(gw)


def test_client_stalling_mid_body_is_cut_off(gw: Gateway) -> None:
    with RawConn(gw.port) as conn:
        conn.send(
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n0123456789"
        )
        try:
            resp: Resp | None = conn.final("POST")
        except (EOFError, ConnectionResetError):
            resp = None
        if resp is not None:
            assert resp.status == 408
    assert_serving(gw)


# --- smuggling and malformed input -------------------------------------------------------------

MALFORMED = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "header-without-colon": b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\nBad Header\r\n\r\n",
    "space-before-colon": b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\nX-Bad : 1\r\n\r\n",
    "nul-in-header": b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\nX-Nul: a\x00b\r\n\r\n",
    "bad-content-length": b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: abc\r\n\r\n",
    "bad-chunk-size": (
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n"
    ),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_and_the_connection_is_closed(gw: Gateway, raw: bytes) -> None:
    with RawConn(gw.port) as conn:
        conn.send(raw)
        resp = conn.final()
        assert resp.status == 400
        assert resp.json()["error"] == "bad_request"
        assert conn.closed_by_peer()
    assert_serving(gw)


SMUGGLING = {
    "cl-and-te": "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "te-and-cl": "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "two-content-lengths": "Content-Length: 5\r\nContent-Length: 6\r\n",
    "content-length-list": "Content-Length: 5, 6\r\n",
}


@pytest.mark.parametrize("framing", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_ambiguous_framing_is_refused_and_nothing_is_smuggled(
    gw: Gateway, raw_record: tuple[int, Path], framing: str
) -> None:
    m = marker()
    smuggled = get(f"/raw/{m}-smuggled", extra="Content-Length: 0\r\n")
    request = f"POST /raw/{m} HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n".encode()
    with RawConn(gw.port) as conn:
        conn.send(request + b"0\r\n\r\n" + smuggled)
        resp = conn.final("POST")
        assert resp.status == 400
        assert conn.closed_by_peer()
    assert_serving(gw)
    assert records_for(raw_record[1], m) == []


@pytest.mark.parametrize("te", ["gzip", "chunked, gzip", "xchunked", "identity"])
def test_transfer_encoding_other_than_chunked_is_refused(
    gw: Gateway, raw_record: tuple[int, Path], te: str
) -> None:
    m = marker()
    with RawConn(gw.port) as conn:
        conn.send(
            f"POST /raw/{m} HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: {te}\r\n\r\n".encode()
        )
        conn.send(b"5\r\nhello\r\n0\r\n\r\n")
        assert conn.final("POST").status in (400, 501)
    assert records_for(raw_record[1], m) == []
    assert_serving(gw)


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /echo/x HTTP/1.1\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    ],
    ids=["no-host", "two-hosts"],
)
def test_http11_needs_exactly_one_host(gw: Gateway, request_head: bytes) -> None:
    with RawConn(gw.port) as conn:
        conn.send(request_head)
        assert conn.final().status == 400
    assert_serving(gw)


# --- limits on the wire ------------------------------------------------------------------------


def test_declared_body_over_limit_gets_413_before_the_body(gw: Gateway) -> None:
    with RawConn(gw.port, timeout=5) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 200000\r\n\r\n")
        resp = conn.final("POST")
    assert resp.status == 413
    assert resp.json()["error"] == "request_too_large"
    assert_serving(gw)


def test_chunked_body_growing_past_limit_gets_413(gw: Gateway) -> None:
    with RawConn(gw.port, timeout=5) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(11):  # 110 000 bytes, over the 100 000 limit, and no last chunk
            conn.send(b"%x\r\n%s\r\n" % (10_000, b"z" * 10_000))
        resp = conn.final("POST")
    assert resp.status == 413
    assert resp.json()["error"] == "request_too_large"
    assert_serving(gw)


# --- what reaches the upstream -----------------------------------------------------------------

HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-hop"]


def test_hop_by_hop_headers_are_removed_and_order_is_kept(
    gw: Gateway, raw_record: tuple[int, Path]
) -> None:
    m = marker()
    head = (
        f"GET /raw/{m} HTTP/1.1\r\nHost: gw.test\r\nX-A: 1\r\nConnection: keep-alive, X-Hop\r\n"
        "Keep-Alive: timeout=5\r\nX-B: 2\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        "Trailer: X-Trail\r\nUpgrade: h2c\r\nX-Hop: secret\r\nX-A: 3\r\nX-C: 4\r\n\r\n"
    )
    with RawConn(gw.port) as conn:
        conn.send(head.encode())
        assert conn.final().status == 200
    [rec] = records_for(raw_record[1], m)
    _, headers = parse_head(rec["head"].encode("latin-1")[:-4])
    names = [name.lower() for name, _ in headers]
    forwarded_connection = [v.lower() for k, v in headers if k.lower() == "connection"]
    assert all(v in ("keep-alive", "close") for v in forwarded_connection), headers
    assert not set(names) & (set(HOP_BY_HOP) - {"connection"}), headers
    custom = [(k.lower(), v) for k, v in headers if k.lower() in ("x-a", "x-b", "x-c")]
    assert custom == [("x-a", "1"), ("x-b", "2"), ("x-a", "3"), ("x-c", "4")]
    assert dict((k.lower(), v) for k, v in headers)["host"] == f"127.0.0.1:{raw_record[0]}"


def test_keep_alive_client_requests_reach_upstream_one_by_one(
    gw: Gateway, raw_record: tuple[int, Path]
) -> None:
    m = marker()
    body = b"POST /raw/%s-2 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc" % m.encode()
    with RawConn(gw.port) as conn:
        conn.send(get(f"/raw/{m}-1") + body + get(f"/raw/{m}-3"))
        assert [conn.final().status for _ in range(3)] == [200, 200, 200]
    records = records_for(raw_record[1], m)
    assert [r["head"].split(" ")[1] for r in records] == [f"/raw/{m}-{i}" for i in (1, 2, 3)]
    assert [r["decoded"] for r in records] == [b"", b"abc", b""]
