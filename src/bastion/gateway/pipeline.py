"""The one straight line a request walks (DESIGN.md "The one idea").

    health → target → normalize → route → plugin chain → proxy upstream → response chain → client

It runs as plain calls, not a task per request: a coroutine is started only where something
must be awaited (a plugin's on_request, or a new upstream connection). The upstream connection
calls back into on_response_head, on_upstream_failure and complete.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final

import httptools

from bastion.errors import BodyTooLarge, ClientGone
from bastion.gateway.access_log import log_exchange
from bastion.gateway.context import RequestContext, ResponseHead
from bastion.gateway.forwarding import (
    NAME_KEPT,
    VERDICTS_KEPT,
    connection_tokens,
    request_id,
    upstream_head,
)
from bastion.gateway.responses import (
    NO_ROUTE,
    RESPONSE_DROPPED,
    Response,
    add_header,
    head_writer,
    header_lines,
    json_error,
    json_response,
)
from bastion.gateway.routing import BadPath, normalize_path
from bastion.gateway.upstream import UpstreamClosed, UpstreamTimeout, parse_length
from bastion.ops.logging import LOG, LogThrottle
from bastion.plugins.step import LATER
from bastion.store.base import StoreUnavailable

if TYPE_CHECKING:
    from bastion.errors import UpstreamError
    from bastion.gateway.exchange import Exchange
    from bastion.gateway.responses import Response
    from bastion.gateway.runtime import Runtime
    from bastion.gateway.server import Worker
    from bastion.gateway.upstream import UpstreamConnection

#: RFC 9110 §9.2.2: safe to send again when a pooled connection turned out to be dead
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CHUNKED: Final = b"Transfer-Encoding: chunked\r\n"
_STORE_ERRORS: Final = LogThrottle()  # one line per 5 s while the store is down


def start(worker: Worker, ex: Exchange) -> None:
    """Answer one request on the runtime that is current when it starts (reload-safe)."""
    runtime = worker.runtime
    runtime.inflight += 1
    ex.runtime = runtime
    try:
        if not _route(worker, runtime, ex):
            _finish(ex)
        elif ex.chain is not None and ex.chain.request:
            _run_plugins_now(worker, ex)
        else:
            _forward(ex)
    except Exception as exc:  # a bug must cost one request, never the worker
        _crash(ex, exc)


def _run_plugins_now(worker: Worker, ex: Exchange) -> None:
    """The request steps that can answer without awaiting (a cached token) run here; a task is
    started only from the first that cannot (a task per request costs more than a cache hit)."""
    assert ex.chain is not None
    for index, step in enumerate(ex.chain.request):
        answer = step.on_request_now(ex)
        if answer is LATER:
            worker.loop.create_task(_run_plugins(ex, index))
            return
        if answer is not None:
            assert isinstance(answer, Response)
            _answer(ex, answer)
            return
    _plugins_passed(ex)


def _answer(ex: Exchange, response: Response) -> None:
    """A plugin answered the request itself: send its response; nothing goes upstream."""
    _with_response_headers(ex, response)
    ex.send_response(response)
    _finish(ex)


def _plugins_passed(ex: Exchange) -> None:
    """Every request step let the request go on: forward it (unless nobody is left to answer,
    or it was a plugin endpoint that did not answer)."""
    if ex.conn.closed:
        _finish(ex)
    elif ex.route is None:
        ex.send_response(NO_ROUTE)
        _finish(ex)
    else:
        _forward(ex)


def _split_target(target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(path, query, host of an absolute-form target) of the targets _route's fast path leaves:
    absolute-form (RFC 9112 §3.2.2), or a path with a `#fragment` (dropped)."""
    if target[:1] != b"/":
        if target.startswith((b"http://", b"https://")):
            # Any: the stub types the fields as bytes and int, but an absent part is None (and
            # the compiled hot path checks declared types)
            url: Any = httptools.parse_url(target)
            authority = url.host + (b":%d" % url.port if url.port else b"")
            return url.path or b"/", url.query or b"", authority
        raise BadPath("the request target must be a path")
    path, _, query = target.partition(b"?")
    return path.split(b"#", 1)[0], query, None


def _route(worker: Worker, runtime: Runtime, ex: Exchange) -> bool:
    """Find the route and build the context; False when the request was answered here."""
    try:
        target = ex.target
        whole = target.decode("utf-8", "surrogateescape")
        # origin-form without multi-byte characters, the common case: each character is one
        # byte, so the str's indices are the bytes'. (str.find is a C call once compiled;
        # bytes.find and .partition are looked up by name and parse their arguments: ~800
        # instructions each, bench/PROFILE.md)
        if len(whole) == len(target) and whole.startswith("/") and whole.find("#") < 0:
            mark = whole.find("?")
            if mark < 0:
                text, raw_query = whole, b""
            else:
                text, raw_query = whole[:mark], target[mark + 1 :]
        else:
            raw_path, raw_query, authority = _split_target(target)
            if authority is not None:
                ex.lookup[b"host"] = authority
            text = raw_path.decode("utf-8", "surrogateescape")
        health = runtime.health_paths.get(text)
        if health is not None:
            ex.send_response(worker.health_response(health))
            return False
        path = normalize_path(text)
    except (BadPath, httptools.HttpParserInvalidURLError, ValueError) as exc:
        ex.send_response(json_error(400, "bad_request", str(exc), close=True))
        return False
    host = ex.conn.host_of(ex.lookup.get(b"host", b""))
    ex.request_id = request_id(ex.lookup.get(b"x-request-id"))
    if runtime.endpoints:
        endpoint = runtime.endpoints.get(path)
        if endpoint is not None:  # a plugin's own document (JWKS): answered on every host
            ex.path, ex.raw_query, ex.host, ex.chain = path, raw_query, host, endpoint
            ex.query = raw_query.decode("latin-1") if raw_query else ""
            return True
    route = runtime.router.match(host, path)
    if route is None:
        ex.send_response(NO_ROUTE)
        return False
    ex.route = route
    ex.route_name = route.name
    ex.body_limit = route.max_body
    if route.max_body and max(ex.content_length or 0, ex.body_bytes) > route.max_body:
        ex.send_response(json_error(413, "request_too_large", close=True))
        return False
    ex.path = path
    ex.raw_query = raw_query
    ex.query = raw_query.decode("latin-1") if raw_query else ""
    ex.host = host
    ex.chain = route.default_chain if route.chains is None else route.chain_for(host)
    return True


async def _run_plugins(ex: Exchange, first: int = 0) -> None:
    ctx, chain = ex, ex.chain
    assert chain is not None
    try:
        for step in chain.request[first:] if first else chain.request:
            answer = await step.on_request(ctx)
            if answer is not None:
                _answer(ex, answer)
                return
        _plugins_passed(ex)
    except BodyTooLarge:
        ex.send_response(json_error(413, "request_too_large", close=True))
        _finish(ex)
    except ClientGone:
        _finish(ex)  # nobody to answer; a timeout already sent its 408
    except StoreUnavailable as exc:
        # fail closed (SPEC §10): nothing passes while the store cannot say who may pass
        skipped = _STORE_ERRORS.allow()
        if skipped is not None:
            LOG.error(
                "store unavailable", request_id=ex.request_id, error=str(exc), skipped=skipped
            )
        ex.send_response(json_error(503, "store_unavailable"))
        _finish(ex)
    except Exception as exc:
        _crash(ex, exc)


def _with_response_headers(ctx: RequestContext, response: Response | ResponseHead) -> None:
    if ctx.response_set:
        names = set(ctx.response_set)
        response.headers = [h for h in response.headers if h[0].lower() not in names]
        response.headers.extend(ctx.response_set.values())


def _forward(ex: Exchange) -> None:
    route = ex.route
    assert route is not None and ex.runtime is not None
    if ex.chunked_in:
        framing = _CHUNKED
    elif ex.content_length is not None:
        framing = b"Content-Length: %d\r\n" % ex.content_length
    else:
        framing = b""
    ex.upstream_request = upstream_head(
        ex,
        ex.names, route.pool, ex.raw_query, framing=framing,
        preserve_host=route.preserve_host, trusted_peer=ex.conn.trusted, upgrade=ex.upgrade,
        rule=ex.runtime.forward_rule,
    )  # fmt: skip
    _send(ex, fresh=False)


def _send(ex: Exchange, fresh: bool) -> None:
    assert ex.route is not None
    upstream = None if fresh else ex.route.pool.take_idle()
    if upstream is None:
        ex.conn.worker.loop.create_task(_connect(ex))
    else:
        _dispatch(ex, upstream)


async def _connect(ex: Exchange) -> None:
    assert ex.route is not None
    pool = ex.route.pool
    try:
        upstream = await pool.connect()
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, ssl.SSLError):
            kind, reason = "tls", f"the TLS handshake with the upstream failed: {exc.reason}"
        elif isinstance(exc, TimeoutError):
            kind, reason = "connect", "the upstream timed out connecting"
        else:
            kind, reason = "connect", "the upstream refused the connection"
        ex.conn.metrics.upstream_error(pool.name, kind)
        ex.send_response(json_error(502, "upstream_unavailable", reason))
        _finish(ex)
        return
    except Exception as exc:
        _crash(ex, exc)
        return
    if ex.conn.closed:
        pool.put(upstream)  # fresh and unused: keep it for the next request
        _finish(ex)
        return
    _dispatch(ex, upstream)


def _dispatch(ex: Exchange, upstream: UpstreamConnection) -> None:
    upstream.send(ex, ex.upstream_request, ex.method == "HEAD")
    ex.attach(upstream)


def on_upstream_failure(ex: Exchange, upstream: UpstreamConnection, error: UpstreamError) -> None:
    """No response head came: retry once on a fresh connection, or answer 502 / 504."""
    ex.detach()
    metrics = ex.conn.metrics
    name = upstream.pool.name
    if isinstance(error, UpstreamTimeout):
        metrics.upstream_error(name, "timeout")
        ex.send_response(json_error(504, "upstream_timeout", str(error)))
        _finish(ex)
        return
    upstream.close()
    retry = (
        isinstance(error, UpstreamClosed) and error.sent_nothing_back and upstream.reused
        and ex.attempt == 0 and ex.body_sent == 0 and ex.method in IDEMPOTENT
        and not ex.conn.closed
    )  # fmt: skip
    if retry:
        ex.attempt += 1
        _send(ex, fresh=True)
        return
    metrics.upstream_error(name, "reset")
    ex.send_response(json_error(502, "upstream_unavailable", str(error)))
    _finish(ex)


def on_response_head(
    ex: Exchange, status: int, headers: list[tuple[bytes, bytes]], declared: int = -1
) -> None:
    """The upstream's head arrived: response plugins, then the head to the client. `declared`
    is its one valid Content-Length as the upstream connection read it, else -1."""
    ctx, chain = ex, ex.chain
    assert chain is not None
    if status == 101 and not ex.upgrade:
        _bad_upstream(ex, "the upstream switched protocols without being asked to")
        return
    # one pass: render the end-to-end headers, note the framing ones (RFC 9110 §7.6.1)
    lines = head_writer(status)
    length_value = encoding = connection = upgrade = b""
    assert ex.route is not None
    pool = ex.route.pool
    seen = pool.seen
    at = -1
    for name, value in headers:
        at += 1
        if at < len(seen.names) and seen.names[at] == name:  # as the service sent it last time
            low = seen.values[at]
        else:
            low = _dropped_as(name)
            seen.keep(at, name, low)
        if not low:
            add_header(lines, name, value)
        elif low == b"content-length":
            length_value = value
        elif low == b"transfer-encoding":
            encoding = value
        elif low == b"connection":
            connection = value
        elif low == b"upgrade":
            upgrade = value
    named = connection_tokens(connection) if connection else None
    statuses = chain.response_statuses
    stepped = bool(chain.response) and (statuses is None or status in statuses)
    if named or stepped or ctx.response_set:  # the slower path: edit a list of headers
        dropped = RESPONSE_DROPPED | named if named else RESPONSE_DROPPED
        head = ResponseHead(status, [h for h in headers if h[0].lower() not in dropped])
        try:
            for step in chain.response:
                step.on_response(ctx, head)
        except Exception as exc:
            _crash(ex, exc)
            return
        if ex.retry_wanted:
            ex.retry_wanted = False
            if ex.attempt == 0 and ex.body_sent == 0 and not ex.upgrade and not ex.conn.closed:
                _retry(ex)
                return
        _with_response_headers(ctx, head)
        # what plugins set goes through the same rule as the upstream's headers
        status = head.status
        lines = head_writer(status)
        header_lines(lines, (h for h in head.headers if h[0].lower() not in RESPONSE_DROPPED))
    if status == 101:
        extra = b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n"
        ex.write_head(101, lines, length=None, extra=extra)
        ex.tunnel_open()
        return
    if ex.upgrade:
        ex.closing = True  # the client parser stopped at the Upgrade head: this connection ends
    if declared >= 0:
        length: int | None = declared
    else:  # not read upstream (HEAD, 204, 304), or none or several: the last one, if valid
        parsed = parse_length(length_value)
        length = parsed if parsed >= 0 else None
    ex.response_until_close = (
        length is None and encoding.lower().find(b"chunked") < 0 and status not in (204, 304)
        and status >= 200 and ex.method != "HEAD"
    )  # fmt: skip
    ex.write_head(status, lines, length=length)


#: an upstream's header name, as sent → its lower-case form if the gateway drops it, else b"";
#: bounded like forwarding.ForwardRule's memo (upstreams send the same few names every time)
_DROPPED_AS: Final[dict[bytes, bytes]] = {}


def _dropped_as(name: bytes) -> bytes:
    verdict = _DROPPED_AS.get(name)
    if verdict is not None:
        return verdict
    low = name.lower()
    verdict = low if low in RESPONSE_DROPPED else b""
    if len(name) <= NAME_KEPT and len(_DROPPED_AS) < VERDICTS_KEPT:
        _DROPPED_AS[name] = verdict
    return verdict


def _retry(ex: Exchange) -> None:
    """A response plugin asked for one more try (an upstream 401 purged the upstream token):
    drop this answer and its connection, run the request plugins again, forward again."""
    upstream = ex.upstream
    ex.detach()
    if upstream is not None:
        upstream.release(reusable=False)  # its body is never read: the connection goes
    ex.attempt += 1
    ex.conn.worker.loop.create_task(_run_plugins(ex))


def _bad_upstream(ex: Exchange, message: str) -> None:
    upstream = ex.upstream
    ex.detach()
    if upstream is not None:
        upstream.close()
        ex.conn.metrics.upstream_error(upstream.pool.name, "protocol")
    ex.send_response(json_error(502, "upstream_unavailable", message))
    _finish(ex)


def complete(ex: Exchange, clean: bool) -> None:
    """The response ended (cleanly or not): release the upstream connection and finish."""
    if ex.finished:
        return
    upstream = ex.upstream
    ex.detach()
    if upstream is not None:
        upstream.release(reusable=clean and ex.body_done and not ex.conn.closed)
    _finish(ex)


def _finish(ex: Exchange) -> None:
    if ex.finished:
        return
    ex.finished = True
    ex.uncork()
    conn = ex.conn
    runtime = ex.runtime  # None when the request was answered before it started (a bad head)
    if runtime is not None:
        runtime.request_done()
    else:
        runtime = conn.worker.runtime
    log_exchange(conn.metrics, runtime.access_log, ex)  # as configured when the request began
    conn.finish(ex)


def _crash(ex: Exchange, exc: Exception) -> None:
    LOG.error("internal error", request_id=ex.request_id, error=repr(exc))
    ex.closing = True
    if not ex.started:
        ex.send_response(json_error(500, "internal_error"))
    if ex.upstream is not None:
        ex.upstream.abort()
        ex.detach()
    _finish(ex)


def health_body(status: str) -> Response:
    """`{"status": "ok"}` 200, or 503 with why not (`draining`, `store_unavailable`)."""
    return json_response(200 if status == "ok" else 503, {"status": status})
