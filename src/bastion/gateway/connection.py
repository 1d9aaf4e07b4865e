"""ClientConnection: the server side of HTTP/1.1 framing on llhttp (httptools).

It parses request heads, enforces the head limits and the anti-smuggling rules, hands each
request to the pipeline as an Exchange (one at a time: pipelined requests wait their turn, and
reading pauses meanwhile), and keeps the connection's timers: head deadline (slowloris), body
idle, write stall, keep-alive idle. The sweeper in server.py checks the deadlines.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import httptools

from bastion.gateway.access_log import log_exchange
from bastion.gateway.clock import perf_counter
from bastion.gateway.context import KNOWN_NAMES
from bastion.gateway.exchange import Exchange
from bastion.gateway.forwarding import PlaceMemo, not_connected
from bastion.gateway.pipeline import start
from bastion.gateway.request_head import FRAMING_HEADERS, check_head
from bastion.gateway.responses import Response, json_error
from bastion.gateway.routing import host_of

if TYPE_CHECKING:
    from bastion.config.model import Limits
    from bastion.gateway.server import Worker
    from bastion.ops.metrics import Metrics

# what the deadline, when it passes, means
IDLE: Final = 0
HEAD: Final = 1
BODY: Final = 2
WRITE: Final = 3
BUSY: Final = 4

_BAD: Final = "bad_request"

# Request header names clients send most (context.KNOWN_NAMES: usual spelling and lower case),
# mapped to their lower case and whether check_head needs them (FRAMING_HEADERS): one dict
# look-up instead of a bytes.lower() call (a method looked up by name, from compiled code) and a
# set look-up per header. The lower-case names are the hot path's own objects (KNOWN_NAMES).
_LOWER: Final[dict[bytes, tuple[bytes, bool]]] = {
    spelling: (low, low in FRAMING_HEADERS) for spelling, low in KNOWN_NAMES.items()
}


class ClientLimits:
    """The config's limits on clients, as plain fields (Runtime builds it once per config). A
    connection reads several per request; a pydantic model's attributes go through its
    __getattr__ hook, a compiled class's fields are C struct members."""

    __slots__ = (
        "client_timeout", "header_timeout", "keepalive_timeout", "max_header_count",
        "max_header_size",
    )  # fmt: skip

    def __init__(self, limits: Limits) -> None:
        self.client_timeout = float(limits.client_timeout)
        self.header_timeout = float(limits.header_timeout)
        self.keepalive_timeout = float(limits.keepalive_timeout)
        self.max_header_count = limits.max_header_count
        self.max_header_size = limits.max_header_size


class ClientConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    __slots__ = (
        "active",
        "client_ip",
        "closed",
        "deadline",
        "draining",
        "eof",
        "error",
        "feed_parser",
        "head_bytes",
        "head_size",
        "host_cache",
        "in_head",
        "limits",
        "line_version",
        "loop",
        "method_bytes",
        "method_text",
        "metrics",
        "now",
        "parser",
        "parser_keep_alive",
        "parser_method",
        "parser_upgrade",
        "parsing",
        "paused",
        "phase",
        "queue",
        "scheme",
        "seen",
        "transport",
        "transport_write",
        "trusted",
        "tunnel",
        "url",
        "worker",
    )

    def __init__(self, worker: Worker, scheme: str) -> None:
        self.worker = worker
        self.metrics: Metrics = worker.metrics  # the worker's for its life
        self.loop = worker.loop
        # the loop's clock, bound once: `loop.time()` looks the method up by name at each call
        self.now: Callable[[], float] = worker.loop.time
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.transport_write: Callable[[bytes], None] = not_connected
        self.parser = httptools.HttpRequestParser(self)
        # the parser's and the transport's methods, bound once: a call by name from compiled
        # code looks the method up on the type each time (~150 instructions)
        self.feed_parser: Callable[[bytes], None] = self.parser.feed_data
        self.parser_method: Callable[[], bytes] = self.parser.get_method
        self.parser_keep_alive: Callable[[], bool] = self.parser.should_keep_alive
        self.parser_upgrade: Callable[[], bool] = self.parser.should_upgrade
        # the last request's method as llhttp gave it and as text: the same, as a rule
        self.method_bytes = b""
        self.method_text = ""
        self.client_ip = ""
        self.trusted = False
        self.parsing: Exchange | None = None  # the request whose bytes the parser is reading
        self.active: Exchange | None = None  # the request being answered
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.url = b""
        self.head_bytes = 0
        self.head_size = 0
        self.deadline = 0.0
        self.phase = IDLE
        self.paused = False
        self.closed = False
        self.draining = False
        self.tunnel = False
        self.error: Response | None = None
        self.in_head = False
        self.line_version = ""  # "1.1" or "1.0" from the request line data_received saw first
        self.limits = worker.runtime.client_limits
        self.host_cache: tuple[bytes, str] = (b"", "")
        self.eof = False
        # this connection's last request's header names, with what _LOWER (or lower()) said
        self.seen: PlaceMemo[tuple[bytes, bool]] = PlaceMemo()

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport_write = transport.write  # type: ignore[attr-defined]
        transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else "unix"
        self.trusted = self.worker.runtime.is_trusted(self.client_ip)
        self.worker.connection_opened(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.active is not None and self.active.upgrade:
                self.active.tunnel_from_client(data)
            else:
                self.pause_reading()  # a refused upgrade: its connection ends after the answer
            return
        if self.error is not None or self.closed:
            return  # after a framing error, or once closing, nothing more is read
        if self.phase == BODY:
            self.deadline = self.now() + self.limits.client_timeout
        elif not self.in_head and self.parsing is None:
            self.in_head = True
            self.phase = HEAD
            self.deadline = self.now() + self.limits.header_timeout
            self.line_version = request_line_version(data)
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.feed_parser(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :] if exc.args else b"")
            return
        except httptools.HttpParserCallbackError:
            self._callback_failed()
        except httptools.HttpParserError as exc:
            self._framing_error(json_error(400, _BAD, _parser_message(exc), close=True))
            return
        if self.in_head and self.head_bytes > self.limits.max_header_size:
            self._framing_error(json_error(431, "headers_too_large", close=True))

    def eof_received(self) -> bool | None:
        # a half-closed client may still read the responses it is waiting for
        self.eof = True
        return self.active is not None and self.active.body_done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connection_closed(self)
        ex = self.active
        if ex is not None and ex.upstream is not None and not ex.finished:
            ex.upstream.abort()  # the client went away: stop the upstream work too
        if ex is not None:
            ex.body_aborted()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.phase, self.deadline = WRITE, self.now() + self.limits.client_timeout
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.phase == WRITE:  # (not if the exchange ended meanwhile and the connection idles)
            self.phase, self.deadline = BUSY, 0.0
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # --- llhttp callbacks
    def on_message_begin(self) -> None:
        if self.closed or self.error is not None:
            raise _Stop  # answered and closing: bytes after that are never another request
        self.parsing = Exchange(self)
        self.limits = self.worker.runtime.client_limits  # each request uses the config current now
        self.url = b""
        self.head_size = 0
        self.in_head = True
        if self.phase != HEAD:
            self.phase = HEAD
            self.deadline = self.now() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        if ex is None or not self.in_head:
            return  # chunked trailers are not forwarded
        at = len(ex.headers)
        seen = self.seen
        if at < len(seen.names) and seen.names[at] == name:  # as last time, at this place
            low, framing = seen.values[at]
        else:
            known = _LOWER.get(name)
            if known is None:
                low = name.lower()
                known = _LOWER.get(low)  # an unusual spelling of a common name: its object
                if known is None:
                    known = (low, low in FRAMING_HEADERS)
            seen.keep(at, name, known)
            low, framing = known
        ex.headers.append((name, value))
        ex.names.append(low)
        ex.lookup[low] = value
        self.head_size += len(name) + len(value) + 4
        if framing:
            ex.framing.append((low, value))

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.in_head = False
        # (memory stays bounded meanwhile: data_received counts the head's bytes as they come)
        if len(ex.headers) > self.limits.max_header_count:
            self._framing_error(
                json_error(431, "headers_too_large", "too many headers", close=True)
            )
            raise _Stop
        if len(self.url) + self.head_size > self.limits.max_header_size:
            self._framing_error(json_error(431, "headers_too_large", close=True))
            raise _Stop
        self.head_bytes = 0
        method = self.parser_method()
        if method != self.method_bytes:
            self.method_bytes, self.method_text = method, method.decode("ascii", "replace")
        ex.method = self.method_text
        # the version read off the request line when it came first in a chunk, else llhttp's
        # (whose get_http_version formats a str: ~0.5 µs, 5 % of a proxied request's Python)
        ex.http_version = self.line_version or self.parser.get_http_version()
        self.line_version = ""
        ex.keep_alive = self.parser_keep_alive()
        if self.parser_upgrade():
            # only WebSocket becomes a tunnel: others (h2c above all) would open a channel to the
            # upstream past routing and plugins; llhttp stops at this head either way
            ex.upgrade = ex_upgrade_is_websocket(ex)
            ex.closing = not ex.upgrade
        ex.target = self.url
        problem = check_head(ex)
        if problem is not None:
            self._framing_error(problem)
            raise _Stop
        ex.start = perf_counter()
        if ex.has_body:
            # a body streams: start now, so it can flow upstream as it arrives
            self.phase, self.deadline = BODY, self.now() + self.limits.client_timeout
            self._admit(ex)
        else:
            self.phase, self.deadline = BUSY, 0.0

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.feed_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.feed_body_end()
        if ex is self.active and self.phase == BODY:
            self.phase, self.deadline = BUSY, 0.0
        if not ex.has_body:
            self._admit(ex)  # the whole request is read: answer it

    # --- driving exchanges
    def _admit(self, ex: Exchange) -> None:
        if self.closed:
            return
        if self.active is None:
            self._start(ex)
        else:
            self.queue.append(ex)  # pipelined: answered in order, reading waits meanwhile
            self.pause_reading()

    def _start(self, ex: Exchange) -> None:
        self.active = ex
        start(self.worker, ex)

    def _start_queued(self) -> None:
        if self.active is None and self.queue and not self.closed:
            self._start(self.queue.popleft())
            if not self.queue:
                self.resume_reading()

    def finish(self, ex: Exchange) -> None:
        """The pipeline is done with `ex`: close, or go on with the next request."""
        ex.finished = True
        self.active = None
        if self.closed:
            return
        if ex.closing or not ex.keep_alive or self.draining or not ex.body_done or self.tunnel:
            self.close()
            return
        if self.eof and not self.queue:
            self.close()  # the client half-closed: nothing more will come
            return
        if self.queue:
            # not from inside the callback that finished `ex`: the next one starts afresh
            self.loop.call_soon(self._start_queued)
            return
        if self.error is not None:
            self._send_error(self.error)
            return
        self.resume_reading()
        if self.parsing is None:
            self._idle()

    def body_too_large(self, ex: Exchange) -> None:
        """A streaming body passed its limit: 413 if nothing was answered yet, and close."""
        self.error = json_error(413, "request_too_large", close=True)
        if ex is self.active:
            if ex.upstream is not None:
                ex.upstream.abort()
            if not ex.started:
                ex.closing = True
                self._send_error(self.error)
            else:
                self.abort()
        raise _Stop

    def host_of(self, raw: bytes) -> str:
        """routing.host_of for this connection's Host header (a client rarely changes it)."""
        cached_raw, cached = self.host_cache
        if raw == cached_raw and cached_raw:
            return cached
        host = host_of(raw.decode("latin-1"))
        self.host_cache = (raw, host)
        return host

    # --- helpers
    def _idle(self) -> None:
        self.phase = IDLE
        self.deadline = self.now() + self.limits.keepalive_timeout

    def _upgrade(self, rest: bytes) -> None:
        """llhttp stops at an Upgrade request; after the head, the bytes are the tunnel's."""
        self.tunnel = True
        self.in_head = False
        ex = self.active or (self.queue[-1] if self.queue else None)
        if rest and ex is not None and ex.upgrade:
            ex.tunnel_from_client(rest)

    def _callback_failed(self) -> None:
        """A callback stopped the parser. Its reason is recorded, unless it was a bug. (A method
        of its own: in data_received, `self.error` is known to be None, but a callback sets it.)"""
        if self.error is None:
            self._framing_error(json_error(400, _BAD, "invalid request", close=True))

    def _framing_error(self, response: Response) -> None:
        """Malformed or over-limit input: answer now if idle, else after the active response."""
        self.error = response
        self.in_head = False
        self.pause_reading()
        if self.active is None or (not self.active.started and self.active is self.parsing):
            self._send_error(response)

    def _send_error(self, response: Response) -> None:
        ex = self.active or self.parsing or Exchange(self)
        ex.keep_alive = False
        ex.closing = True
        ex.route_name = ex.route_name or ""
        if not ex.started:
            ex.send_response(response)
        if ex is not self.active:
            worker = self.worker  # the pipeline logs the active one when it ends
            log_exchange(self.metrics, worker.runtime.access_log, ex)
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport_write(data)

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.closed and self.error is None:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def timed_out(self) -> None:
        """Called by the sweeper when `deadline` passed."""
        phase, self.deadline = self.phase, 0.0
        ex = self.active
        if phase == IDLE:
            self.close()
        elif phase in (HEAD, BODY) and (ex is None or not ex.started):
            if ex is not None and ex.upstream is not None:
                ex.upstream.abort()
            self.error = json_error(408, "request_timeout", close=True)
            self._send_error(self.error)
        else:
            self.abort()

    def start_drain(self) -> None:
        """Stop taking requests: idle connections close now, busy ones after their response."""
        self.draining = True
        if self.active is None and self.parsing is None:
            self.close()


class _Stop(Exception):
    """Raised inside an llhttp callback to stop parsing; the reason is already recorded."""


def request_line_version(data: bytes) -> str:
    """ "1.1" or "1.0" when `data` begins with a request line that ends in that version, else ""
    (llhttp is asked instead). Only a line ended by the chunk's first LF, as CRLF, counts: with
    a bare LF the CRLF found could end a later line (a header value ending in ` HTTP/1.1`)."""
    end = data.find(b"\n")
    if end < 10:
        return ""
    tail = data[end - 10 : end]
    if tail == b" HTTP/1.1\r":
        return "1.1"
    return "1.0" if tail == b" HTTP/1.0\r" else ""


def ex_upgrade_is_websocket(ex: Exchange) -> bool:
    return ex.lookup.get(b"upgrade", b"").strip().lower() == b"websocket"


def _parser_message(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    return text[:200]
