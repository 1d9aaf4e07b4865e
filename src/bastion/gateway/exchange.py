"""Exchange: one request/response cycle on a client connection, and the bytes that flow through it.

The client parser feeds request body chunks in; until an upstream connection is ready they are
buffered (reading from the client pauses past a bound), then they stream straight to the
upstream. Response body chunks stream from the upstream to the client the same way. Each side
pauses the other when its write buffer is full (backpressure), so memory stays bounded whatever
the sizes. The upstream connection calls the exchange back; the exchange hands the decisions
(what the response head becomes, whether to retry) to the pipeline.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from bastion.errors import BodyTooLarge, ClientGone
from bastion.gateway import pipeline
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import RESPONSE_DROPPED, Response, head_writer, header_lines

if TYPE_CHECKING:
    from librt.strings import BytesWriter

    from bastion.errors import UpstreamError
    from bastion.gateway.connection import ClientConnection
    from bastion.gateway.route import Chain, RouteRuntime
    from bastion.gateway.runtime import Runtime
    from bastion.gateway.upstream import UpstreamConnection

Header = tuple[bytes, bytes]

_BUFFER_LIMIT: Final = 256 * 1024  # request body bytes held while no upstream is connected yet
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange(RequestContext):
    """See the module docstring. Created by the ClientConnection at the start of a request; it is
    also the RequestContext the plugins see (one object per request)."""

    __slots__ = (
        "attempt",
        "body_bytes",
        "body_done",
        "body_limit",
        "body_sent",
        "body_waiter",
        "body_wanted",
        "buffer",
        "buffered",
        "bytes_out",
        "chain",
        "chunked_in",
        "chunked_out",
        "closing",
        "conn",
        "content_length",
        "continue_sent",
        "corked",
        "expect_continue",
        "finished",
        "framing",
        "has_body",
        "keep_alive",
        "names",
        "no_body",
        "raw_query",
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
        "upstream_request",
    )  # fmt: skip

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        # RequestContext's fields, filled in as the request is parsed and routed
        self.path = ""
        self.query = ""
        self.raw_query = b""
        self.host = ""
        self.client_ip = conn.client_ip
        self.scheme = conn.scheme
        self.consumer: str | None = None
        self.set_low: bytes | None = None
        self.set_pair: Header | None = None
        self.upstream_set: dict[bytes, Header] | None = None
        self.upstream_remove: set[bytes] | None = None
        self.edits_own = False
        self.response_set: dict[bytes, Header] | None = None
        self.state: dict[str, Any] | None = None
        self.retry_wanted = False
        self.method = ""
        self.target = b""
        self.headers: list[Header] = []
        self.names: list[bytes] = []  # lower-case names of `headers`, in the same order
        self.framing: list[Header] = []  # (lower-case name, value) of framing headers
        self.lookup: dict[bytes, bytes] = {}
        self.http_version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.content_length: int | None = None
        self.chunked_in = False
        self.has_body = False  # chunked, or a Content-Length above 0 (set by check_head)
        self.body_done = False
        self.body_bytes = 0
        self.body_limit = 0  # 0: no limit
        self.body_waiter: asyncio.Future[None] | None = None  # a plugin awaits the whole body
        self.body_wanted = 0  # the limit of that plugin's read
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
        self.upstream: UpstreamConnection | None = None
        self.tunnel_pending: list[bytes] | None = None
        self.start = 0.0
        self.route_name = ""
        self.request_id = ""
        self.closing = False  # close the client connection after this exchange
        self.body_sent = 0  # request body bytes written upstream
        self.finished = False
        self.corked: list[bytes] | None = None
        self.runtime: Runtime | None = None
        self.route: RouteRuntime | None = None
        self.chain: Chain | None = None
        self.upstream_request = b""  # the request head sent upstream
        self.attempt = 0

    # --- request body, from the client parser
    def feed_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_limit and self.body_bytes > self.body_limit:
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
        waiter = self.body_waiter
        if waiter is not None:  # a plugin reads the whole body: its limit bounds the buffer
            if self.buffered > self.body_wanted:
                self.body_waiter = None
                if not waiter.done():
                    waiter.set_exception(BodyTooLarge())
                self.conn.pause_reading()
        elif self.buffered >= _BUFFER_LIMIT:
            self.conn.pause_reading()

    def feed_body_end(self) -> None:
        self.body_done = True
        waiter, self.body_waiter = self.body_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        sink = self.sink
        if sink is not None:
            if self.chunked_in:
                sink.write(b"0\r\n\r\n")
            sink.start_response_timer()

    def header_count(self, low: bytes) -> int:
        # the lower-case names, kept as parsed; common ones are the same objects as `low` (a C
        # loop, compiled: list.count compares through PyObject_RichCompare)
        count = 0
        for name in self.names:
            if name is low or name == low:
                count += 1
        return count

    async def read_body(self, limit: int) -> bytes:
        if not self.has_body:
            return b""
        if (self.content_length or 0) > limit or self.buffered > limit:
            raise BodyTooLarge()
        if not self.body_done:
            if self.conn.closed:
                raise ClientGone()
            self.body_wanted = limit
            self.body_waiter = self.conn.loop.create_future()
            self.want_body()
            self.conn.resume_reading()
            await self.body_waiter
        return b"".join(self.buffer) if self.buffer else b""

    def body_aborted(self) -> None:
        """The connection is gone: a plugin waiting for the body stops waiting."""
        waiter, self.body_waiter = self.body_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientGone())

    def want_body(self) -> None:
        """Tell a client that sent `Expect: 100-continue` to go on (RFC 9110 §10.1.1)."""
        if self.expect_continue and not (self.continue_sent or self.body_done or self.started):
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

    # --- callbacks from the upstream connection
    def response_head(self, status: int, headers: list[Header], declared: int = -1) -> None:
        pipeline.on_response_head(self, status, headers, declared)

    def upstream_failed(self, upstream: UpstreamConnection, error: UpstreamError) -> None:
        pipeline.on_upstream_failure(self, upstream, error)

    def upstream_body(self, chunk: bytes) -> None:
        if self.no_body or not chunk or self.finished:
            return
        self.bytes_out += len(chunk)
        self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked_out else chunk)

    def upstream_body_end(self, clean: bool) -> None:
        if self.finished:
            return
        if self.chunked_out and clean:
            self._write(b"0\r\n\r\n")
        if not clean:
            self.closing = True
        pipeline.complete(self, clean)

    def uncork(self) -> None:
        corked, self.corked = self.corked, None
        if corked:
            self.conn.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def _write(self, data: bytes) -> None:
        if self.corked is not None:
            self.corked.append(data)
        else:
            self.conn.write(data)

    # --- the response, to the client
    def write_head(
        self, status: int, out: BytesWriter, *, length: int | None, extra: bytes = b"",
        body: bytes = b"",
    ) -> None:  # fmt: skip
        """End and write the response head; framing is decided here from `length` and the
        request. `out` is head_writer(status) with the end-to-end headers written after it
        (callers drop RESPONSE_DROPPED); the caller gives it up."""
        conn = self.conn
        self.status = status
        self.started = True
        self.no_body = self.method == "HEAD" or status in (204, 304) or status < 200
        if status == 101:
            out.write(extra)
        elif status in (204, 304) or status < 200:
            pass
        elif length is not None:
            out.write(b"Content-Length: %d\r\n" % length)
        elif self.no_body:
            pass
        elif self.http_version == "1.1":
            self.chunked_out = True
            out.write(b"Transfer-Encoding: chunked\r\n")
        else:
            self.closing = True  # HTTP/1.0: the end of the body is the end of the connection
        if self.request_id:
            out.write(b"X-Request-Id: ")
            out.write(self.request_id.encode())
            out.write(b"\r\n")
        if status != 101:
            if self.closing or not self.keep_alive or conn.draining:
                self.closing = True
                out.write(b"Connection: close\r\n")
            elif self.http_version == "1.0":
                out.write(b"Connection: keep-alive\r\n")
        out.write(b"\r\n")
        if body and not self.no_body:
            out.write(body)
            self.bytes_out += len(body)
        self._write(out.getvalue())

    def send_response(self, response: Response) -> None:
        """Write a whole response the gateway or a plugin made."""
        if self.conn.closed:
            return  # nobody to answer: the exchange is logged as 499
        if response.close or not self.body_done:
            # an unread request body cannot be skipped safely: close after answering
            self.closing = True
        out = head_writer(response.status)
        header_lines(out, (h for h in response.headers if h[0].lower() not in RESPONSE_DROPPED))
        self.write_head(response.status, out, length=len(response.body), body=response.body)

    # --- upgrade tunnel (WebSocket)
    def tunnel_from_upstream(self, data: bytes) -> None:
        if self.finished:
            return
        self.bytes_out += len(data)
        self._write(data)

    def tunnel_from_client(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None and self.started and self.status == 101:
            upstream.deadline = self.conn.now() + upstream.pool.timeout
            upstream.write(data)
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
        self.closing = True
        pipeline.complete(self, True)
