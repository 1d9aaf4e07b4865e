"""Exchange: one request/response cycle on a client connection, and the bytes that flow through it.

The client parser feeds request body chunks in; until an upstream connection is ready they are
buffered (reading from the client pauses past a bound), then they stream straight to the
upstream. Response body chunks stream from the upstream to the client the same way. Each side
pauses the other when its write buffer is full (backpressure), so memory stays bounded whatever
the sizes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bastion.gateway.responses import Response, status_line

if TYPE_CHECKING:
    from bastion.gateway.connection import ClientConnection
    from bastion.gateway.upstream import UpstreamConnection

Header = tuple[bytes, bytes]

_BUFFER_LIMIT = 256 * 1024  # request body bytes held while no upstream is connected yet
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: response headers the gateway never relays (hop-by-hop, RFC 9110 §7.6.1; framing is rebuilt)
_RESPONSE_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"x-request-id",
    }
)


class BodyTooLarge(Exception):
    """The request body grew past its limit while streaming."""


class Exchange:
    """See the module docstring. Created by the ClientConnection at the start of a request."""

    __slots__ = (
        "body_bytes",
        "body_done",
        "body_limit",
        "body_overflow",
        "body_sent",
        "buffer",
        "buffered",
        "bytes_out",
        "chunked_in",
        "chunked_out",
        "closing",
        "conn",
        "content_length",
        "continue_sent",
        "done",
        "early",
        "early_end",
        "expect_continue",
        "finished",
        "headers",
        "http_version",
        "keep_alive",
        "lookup",
        "method",
        "no_body",
        "request_id",
        "response_until_close",
        "route_name",
        "sink",
        "start",
        "started",
        "status",
        "target",
        "tunnel_pending",
        "upgrade",
        "upstream",
    )

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.method = ""
        self.target = b""
        self.headers: list[Header] = []
        self.lookup: dict[bytes, bytes] = {}
        self.http_version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.content_length: int | None = None
        self.chunked_in = False
        self.body_done = False
        self.body_bytes = 0
        self.body_limit = 0  # 0: no limit
        self.buffer: list[bytes] | None = None
        self.buffered = 0
        self.sink: UpstreamConnection | None = None
        self.expect_continue = False
        self.continue_sent = False
        self.started = False  # response head written to the client
        self.status = 0
        self.chunked_out = False
        self.response_until_close = False
        self.no_body = False
        self.bytes_out = 0
        self.done: asyncio.Future[bool] | None = None  # set when the response body ended
        self.upstream: UpstreamConnection | None = None
        self.tunnel_pending: list[bytes] | None = None
        self.start = 0.0
        self.route_name = ""
        self.request_id = ""
        self.body_overflow = False
        self.closing = False  # close the client connection after this exchange
        self.body_sent = 0  # request body bytes written upstream
        self.finished = False
        self.early: list[bytes] | None = None  # response body that came before the head was written
        self.early_end: bool | None = None

    # --- request body, from the client parser --------------------------------------------------
    @property
    def has_body(self) -> bool:
        return self.chunked_in or bool(self.content_length)

    def feed_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_limit and self.body_bytes > self.body_limit:
            self.body_overflow = True
            self.conn.body_too_large(self)
            return
        sink = self.sink
        if sink is not None:
            self.body_sent += len(chunk)
            sink.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked_in else chunk)
            return
        if self.buffer is None:
            self.buffer = []
        self.buffer.append(chunk)
        self.buffered += len(chunk)
        if self.buffered >= _BUFFER_LIMIT:
            self.conn.pause_reading()

    def feed_body_end(self) -> None:
        self.body_done = True
        sink = self.sink
        if sink is not None:
            if self.chunked_in:
                sink.write(b"0\r\n\r\n")
            sink.start_response_timer()

    def want_body(self) -> None:
        """Tell a client that sent `Expect: 100-continue` to go on (RFC 9110 §10.1.1)."""
        if (
            self.expect_continue
            and not self.continue_sent
            and not self.body_done
            and not self.started
        ):
            self.continue_sent = True
            self.conn.write(_CONTINUE)

    def attach(self, upstream: UpstreamConnection) -> None:
        """The request head went upstream: flush the buffered body and stream the rest."""
        self.upstream = upstream
        self.sink = upstream
        if self.buffer:
            data = b"".join(self.buffer)
            self.buffer = None
            self.buffered = 0
            self.body_sent += len(data)
            upstream.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked_in else data)
            self.conn.resume_reading()
        if self.body_done or not self.has_body:
            if self.chunked_in:
                upstream.write(b"0\r\n\r\n")
            upstream.start_response_timer()
        else:
            self.want_body()

    def detach(self) -> None:
        self.sink = None
        self.upstream = None

    # --- backpressure
    def pause_client_reading(self) -> None:
        self.conn.pause_reading()

    def resume_client_reading(self) -> None:
        self.conn.resume_reading()

    # --- response, to the client -----------------------------------------------------------------
    def write_head(
        self,
        status: int,
        headers: list[Header],
        *,
        length: int | None,
        extra: bytes = b"",
        body: bytes = b"",
    ) -> None:
        """Write the response head; framing is decided here from `length` and the request."""
        conn = self.conn
        self.status = status
        self.started = True
        self.no_body = self.method == "HEAD" or status in (204, 304) or status < 200
        out = [status_line(status)]
        for name, value in headers:
            if name.lower() not in _RESPONSE_DROPPED:
                out += (name, b": ", value, b"\r\n")
        if status == 101:
            out.append(extra)
        elif status in (204, 304) or status < 200:
            pass
        elif length is not None:
            out += (b"Content-Length: ", str(length).encode(), b"\r\n")
        elif self.no_body:
            pass
        elif self.http_version == "1.1":
            self.chunked_out = True
            out.append(b"Transfer-Encoding: chunked\r\n")
        else:
            self.closing = True  # HTTP/1.0: the end of the body is the end of the connection
        if self.request_id:
            out += (b"X-Request-Id: ", self.request_id.encode(), b"\r\n")
        if status != 101:
            if self.closing or not self.keep_alive or conn.draining:
                self.closing = True
                out.append(b"Connection: close\r\n")
            elif self.http_version == "1.0":
                out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        if body and not self.no_body:
            out.append(body)
            self.bytes_out += len(body)
        early, self.early = self.early, None
        if early and (not self.no_body or status == 101):
            # the body that came with the upstream's head leaves in the same write (one syscall)
            for chunk in early:
                self.bytes_out += len(chunk)
                out.append(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked_out else chunk)
        if early and self.upstream is not None:
            self.upstream.resume_reading()
        end = self.early_end
        if end is not None:
            self.early_end = None
            if self.chunked_out and end:
                out.append(b"0\r\n\r\n")
        conn.write(b"".join(out))
        if end is not None:
            if not end:
                self.closing = True
            if self.done is not None and not self.done.done():
                self.done.set_result(end)

    def send_response(self, response: Response) -> None:
        """Write a whole response the gateway or a plugin made."""
        if response.close or not self.body_done:
            # an unread request body cannot be skipped safely: close after answering
            self.closing = True
        self.write_head(
            response.status, response.headers, length=len(response.body), body=response.body
        )

    def upstream_body(self, chunk: bytes) -> None:
        if not self.started:
            if self.early is None:
                self.early = []
            self.early.append(chunk)
            if len(self.early) > 16 and self.upstream is not None:
                self.upstream.pause_reading()
            return
        if self.no_body or not chunk:
            return
        self.bytes_out += len(chunk)
        if self.chunked_out:
            self.conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.conn.write(chunk)

    def upstream_body_end(self, clean: bool) -> None:
        if not self.started:
            self.early_end = clean
            return
        self.early_end = None
        if self.chunked_out and clean:
            self.conn.write(b"0\r\n\r\n")
        if not clean:
            self.closing = True
        if self.done is not None and not self.done.done():
            self.done.set_result(clean)

    # --- upgrade tunnel (WebSocket)
    def tunnel_from_upstream(self, data: bytes) -> None:
        if not self.started:  # bytes right behind the 101 wait for its head to be written
            if self.early is None:
                self.early = []
            self.early.append(data)
            return
        self.bytes_out += len(data)
        self.conn.write(data)

    def tunnel_from_client(self, data: bytes) -> None:
        if self.upstream is not None and self.started and self.status == 101:
            self.upstream.write(data)
        else:
            if self.tunnel_pending is None:
                self.tunnel_pending = []
            self.tunnel_pending.append(data)
            self.conn.pause_reading()

    def tunnel_open(self) -> None:
        if self.tunnel_pending and self.upstream is not None:
            for data in self.tunnel_pending:
                self.upstream.write(data)
        self.tunnel_pending = None
        self.conn.resume_reading()

    def tunnel_closed(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(True)
