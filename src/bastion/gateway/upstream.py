"""Upstream side of the data path: pooled keep-alive HTTP/1.1 connections parsed by llhttp.

An UpstreamConnection carries one exchange at a time and calls it back as the response arrives:
the head (or the failure that came instead of it), the body chunks (the exchange writes them to
the client and pauses this connection when the client is slow), the end. It goes back to its
UpstreamPool when the response ended cleanly and both sides allow keep-alive. What a response
brings in one read leaves for the client in one write (the exchange is corked meanwhile).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

from bastion.errors import UpstreamError
from bastion.gateway.forwarding import PlaceMemo, not_connected

if TYPE_CHECKING:
    from bastion.config.model import Service
    from bastion.gateway.exchange import Exchange

Header = tuple[bytes, bytes]


class UpstreamClosed(UpstreamError):
    """The connection closed or broke before the response head arrived."""

    def __init__(self, message: str, *, sent_nothing_back: bool) -> None:
        super().__init__(message)
        self.sent_nothing_back = sent_nothing_back


class UpstreamTimeout(UpstreamError):
    """No response head within the service's timeout."""


def parse_length(value: bytes) -> int:
    """A Content-Length value: its digits, ASCII whitespace around them allowed (as
    `int(value.strip())` when `value.strip().isdigit()`), else -1. Compiled, a loop over the
    bytes is a few instructions a digit; strip, isdigit and int() are calls by name."""
    start, end = 0, len(value)
    while start < end and _is_space(value[start]):
        start += 1
    while end > start and _is_space(value[end - 1]):
        end -= 1
    if start == end:
        return -1
    number = 0
    for i in range(start, end):
        digit = value[i] - 48
        if digit < 0 or digit > 9:
            return -1
        number = number * 10 + digit
    return number


def _is_space(byte: int) -> bool:
    return byte == 32 or 9 <= byte <= 13  # bytes.strip()'s ASCII whitespace


def _content_length(headers: list[Header]) -> int:
    """The body length a response head declares, or -1 when its body is framed otherwise
    (chunked, until close) or the head is ambiguous (llhttp refuses conflicting lengths)."""
    length = -1
    for name, value in headers:
        # the usual spelling first: a bytes comparison is a C call, lower() a method call by name
        if len(name) == 14 and (name == b"Content-Length" or name.lower() == b"content-length"):
            if length >= 0:
                return -1
            length = parse_length(value)
            if length < 0:
                return -1
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            return -1
    return length


class UpstreamConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to an upstream; see the module docstring."""

    __slots__ = (
        "body_left",
        "deadline",
        "exchange",
        "feed_parser",
        "got_bytes",
        "head_request",
        "headers",
        "idle_since",
        "keep_alive",
        "open",
        "parser",
        "parser_keep_alive",
        "parser_status",
        "paused",
        "pool",
        "response_done",
        "reused",
        "status",
        "transport",
        "transport_write",
        "tunnel",
    )  # fmt: skip

    parser: httptools.HttpResponseParser
    feed_parser: Callable[[bytes], None]
    parser_status: Callable[[], int]
    parser_keep_alive: Callable[[], bool]

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.transport_write: Callable[[bytes], None] = not_connected
        self._new_parser()
        self.exchange: Exchange | None = None
        self.headers: list[Header] = []
        self.status = 0  # of the final response; 0 until its head arrived
        self.reused = False
        self.deadline = 0.0  # loop time after which the sweeper times this request out; 0: none
        self.idle_since = 0.0
        self.open = False
        self.keep_alive = True
        self.got_bytes = False
        self.head_request = False
        self.response_done = False
        self.tunnel = False
        self.paused = False
        # bytes of a Content-Length body still to come; -1: the body is not one (chunked, until
        # close, none). Past the first read they bypass llhttp (its on_body copies every chunk)
        self.body_left = -1

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport_write = transport.write  # type: ignore[attr-defined]
        transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)  # type: ignore[attr-defined]
        self.open = True
        self.pool.live.add(self)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if self.tunnel:
            if ex is None:
                self.close()
                return
            self.deadline = self.pool.now() + self.pool.timeout  # idle tunnels time out
            ex.tunnel_from_upstream(data)
            return
        if ex is None:
            self.close()  # bytes on an idle connection: the upstream is confused; never reuse it
            return
        self.got_bytes = True
        if ex.corked is None:  # what this read brings leaves for the client in one write
            ex.corked = []
        if self.body_left > 0 and self.status >= 200 and not self.response_done:
            self._body_bytes(ex, data)
            return
        try:
            self.feed_parser(data)
        except httptools.HttpParserUpgrade as exc:
            self.tunnel = True
            if self.exchange is not ex or ex.status != 101:
                self.close()  # a 101 the client did not ask for, already answered with a 502
                return
            self.deadline = self.pool.now() + self.pool.timeout
            rest = data[exc.args[0] :] if exc.args else b""
            if rest:
                ex.tunnel_from_upstream(rest)
        except httptools.HttpParserError as exc:
            self.close()
            message = f"invalid response from upstream: {exc}"
            if self.status == 0:
                self._fail(UpstreamClosed(message, sent_nothing_back=False))
            elif not self.response_done:
                self.response_done = True
                ex.upstream_body_end(clean=False)
        finally:
            ex.uncork()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool.live.discard(self)
        self.pool.forget(self)
        ex = self.exchange
        if ex is None:
            return
        if self.tunnel:
            self.exchange = None
            ex.tunnel_closed()
        elif self.status == 0:
            self._fail(
                UpstreamClosed(
                    "the upstream closed the connection before answering",
                    sent_nothing_back=not self.got_bytes,
                )
            )
        elif not self.response_done:
            # a body delimited by the end of the connection ends here; anything else is cut short
            self.response_done = True
            ex.upstream_body_end(clean=ex.response_until_close)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.resume_reading()

    # --- llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.status == 0:  # trailers after a chunked body are dropped (they arrive later)
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser_status()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # interim responses (100, 103) are not relayed (as nginx)
            return
        self.status = status
        self.keep_alive = self.parser_keep_alive()
        self.body_left = -1
        if status != 101 and not self.head_request and status not in (204, 304):
            self.body_left = _content_length(self.headers)
        ex = self.exchange
        if ex is None:
            return
        ex.response_head(status, self.headers, self.body_left)
        if (self.head_request or status in (204, 304)) and not self.response_done:
            # llhttp cannot be told the request was HEAD; end the message here and use a fresh
            # parser for the next response on this connection
            self._new_parser()
            self._message_done()

    def on_body(self, body: bytes) -> None:
        if self.body_left > 0:
            self.body_left -= len(body)
        ex = self.exchange
        if ex is not None and not self.response_done:
            if self.deadline:
                self.deadline = self.pool.now() + self.pool.timeout
            ex.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.status in (0, 101) or self.response_done:
            return  # the end of an interim 1xx response, of a 101 (a tunnel follows), or of HEAD
        self._message_done()

    def _body_bytes(self, ex: Exchange, data: bytes) -> None:
        """The rest of a Content-Length body, counted here instead of parsed: llhttp has seen
        the head (and checked its framing), so only the length is left to enforce."""
        try:
            left = self.body_left
            chunk = data if len(data) <= left else data[:left]
            self.body_left = left - len(chunk)
            if self.deadline:
                self.deadline = self.pool.now() + self.pool.timeout
            ex.upstream_body(chunk)
            if self.body_left == 0:
                if len(data) > len(chunk):
                    self.close()  # bytes after the response: a confused upstream, never reused
                # llhttp was left mid-body: a fresh parser for the next response
                self._new_parser()
                self.body_left = -1
                self._message_done()
        finally:
            ex.uncork()

    def _new_parser(self) -> None:
        """A fresh llhttp parser, and its methods bound once, as ClientConnection's (a call by
        name from compiled code looks the method up on the type each time)."""
        self.parser = httptools.HttpResponseParser(self)
        self.feed_parser = self.parser.feed_data
        self.parser_status = self.parser.get_status_code
        self.parser_keep_alive = self.parser.should_keep_alive

    # --- used by the exchange
    def send(self, exchange: Exchange, head: bytes, head_request: bool) -> None:
        """Send a request head; the exchange is called back with what comes of it."""
        assert self.transport is not None
        self.exchange = exchange
        self.headers = []
        self.status = 0
        self.got_bytes = False
        self.response_done = False
        self.body_left = -1
        self.head_request = head_request
        self.deadline = 0.0
        self.transport_write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.open:
            self.transport_write(data)

    def start_response_timer(self) -> None:
        """The request is fully sent: from now the response head must come within the timeout."""
        if not self.response_done and not self.paused:
            self.deadline = self.pool.now() + self.pool.timeout

    def timed_out(self) -> None:
        """Called by the sweeper when `deadline` passed."""
        self.deadline = 0.0
        ex = self.exchange
        self.close()
        if self.status == 0:
            self._fail(UpstreamTimeout("the upstream did not answer in time"))
        elif ex is not None and not self.response_done:
            self.response_done = True
            ex.upstream_body_end(clean=False)

    def pause_reading(self) -> None:
        """The client reads slower than the upstream sends: stop reading (and timing) it."""
        if self.transport is not None and not self.paused:
            self.paused = True
            self.deadline = 0.0
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            if not self.response_done and self.exchange is not None:
                self.deadline = self.pool.now() + self.pool.timeout
            self.transport.resume_reading()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def _message_done(self) -> None:
        self.response_done = True
        self.deadline = 0.0
        ex = self.exchange
        if ex is not None:
            ex.upstream_body_end(clean=True)

    def _fail(self, error: UpstreamError) -> None:
        """No response head will come: tell the exchange (once) and let go of it."""
        ex, self.exchange = self.exchange, None
        if ex is not None:
            ex.upstream_failed(self, error)

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: pool it or close it."""
        self.exchange = None
        if self.paused:
            self.resume_reading()
        if reusable and self.open and self.keep_alive and self.response_done and not self.tunnel:
            self.pool.put(self)
        else:
            self.close()


class UpstreamPool:
    """Keep-alive connections to one service, per worker; idle ones reused newest first."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        parts = urlsplit(service.url)
        self.name = service.name
        self.loop = loop
        self.now: Callable[[], float] = loop.time  # bound once (connection.py)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host_text = f"[{self.host}]" if ":" in self.host else self.host
        #: the Host header sent upstream unless a route preserves the client's
        self.host_header = (host_text if default_port else f"{host_text}:{self.port}").encode()
        #: the service URL's path, put before every request path (bytes: one encode, here)
        self.base_path = (parts.path or "").rstrip("/").encode()
        self.connect_timeout = service.connect_timeout
        self.timeout = service.timeout
        self.idle_timeout = service.idle_timeout
        self.max_idle = service.max_idle
        self.ssl: ssl.SSLContext | None = None
        if self.tls:
            self.ssl = ssl.create_default_context()
            if not service.tls_verify:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self.idle: list[UpstreamConnection] = []
        self.live: set[UpstreamConnection] = set()
        self.closed = False
        #: the last response head's header names from this service, with what pipeline's
        #: _DROPPED_AS said of each
        self.seen: PlaceMemo[bytes] = PlaceMemo()

    def take_idle(self) -> UpstreamConnection | None:
        """The most recently pooled connection still open, or None."""
        while self.idle:
            conn = self.idle.pop()
            if conn.open:
                conn.reused = True
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection (raises OSError / TimeoutError)."""
        kwargs: dict[str, Any] = {}
        if self.ssl is not None:
            kwargs = {"ssl": self.ssl, "server_hostname": self.host}
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port, **kwargs
            ),
            self.connect_timeout,
        )
        conn.reused = False
        return conn

    def put(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.now()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def sweep(self, now: float) -> None:
        """Time out slow responses and close connections idle past idle_timeout."""
        for conn in list(self.live):
            if conn.deadline and now > conn.deadline:
                conn.timed_out()
        if self.idle and now - self.idle[0].idle_since > self.idle_timeout:
            for conn in [c for c in self.idle if now - c.idle_since > self.idle_timeout]:
                conn.close()

    def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange releases them."""
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.idle.clear()
