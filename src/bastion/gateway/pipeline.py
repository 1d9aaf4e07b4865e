"""The one straight line a request walks (DESIGN.md "The one idea").

health → target → normalize → route → plugin chain → proxy upstream → response chain → client
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from bastion.gateway.context import RequestContext, ResponseHead
from bastion.gateway.forwarding import request_id, upstream_head
from bastion.gateway.responses import NO_ROUTE, Response, json_error, json_response
from bastion.gateway.routing import BadPath, host_of, normalize_path
from bastion.gateway.upstream import UpstreamClosed, UpstreamTimeout
from bastion.ops.logging import LOG

if TYPE_CHECKING:
    from bastion.gateway.exchange import Exchange
    from bastion.gateway.runtime import Chain, RouteRuntime, Runtime
    from bastion.gateway.server import Worker

#: RFC 9110 §9.2.2: safe to send again when a pooled connection turned out to be dead
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


async def run_exchange(worker: Worker, ex: Exchange) -> None:
    """Answer one request on the runtime that is current when it starts (reload-safe)."""
    runtime = worker.runtime
    runtime.inflight += 1
    try:
        await _handle(worker, runtime, ex)
    except Exception as exc:  # a bug must cost one request, never the worker
        LOG.error("internal error", request_id=ex.request_id, error=repr(exc))
        ex.closing = True
        if not ex.started:
            ex.send_response(json_error(500, "internal_error"))
    finally:
        runtime.request_done()
        worker.log_exchange(ex)
        ex.conn.finish(ex)


def _split_target(ex: Exchange) -> tuple[bytes, bytes, bytes | None]:
    """(path, query, host from an absolute-form target) of the request target."""
    target = ex.target
    if target[:1] != b"/":
        if target.startswith((b"http://", b"https://")):  # absolute-form, RFC 9112 §3.2.2
            url = httptools.parse_url(target)
            authority = url.host + (b":%d" % url.port if url.port else b"")
            return url.path or b"/", url.query or b"", authority
        raise BadPath("the request target must be a path")
    mark = target.find(b"?")
    path, query = (target[:mark], target[mark + 1 :]) if mark >= 0 else (target, b"")
    hash_mark = path.find(b"#")
    return (path[:hash_mark] if hash_mark >= 0 else path), query, None


async def _handle(worker: Worker, runtime: Runtime, ex: Exchange) -> None:
    try:
        raw_path, raw_query, authority = _split_target(ex)
        if authority is not None:
            ex.lookup[b"host"] = authority
        text = raw_path.decode("utf-8", "surrogateescape")
        health = runtime.health_paths.get(text)
        if health is not None:
            ex.send_response(worker.health_response(health))
            return
        path = normalize_path(text)
    except (BadPath, httptools.HttpParserInvalidURLError, ValueError) as exc:
        ex.send_response(json_error(400, "bad_request", str(exc), close=True))
        return
    host = host_of(ex.lookup.get(b"host", b"").decode("latin-1"))
    route = runtime.router.match(host, path)
    ex.request_id = request_id(ex.lookup.get(b"x-request-id"))
    if route is None:
        ex.send_response(NO_ROUTE)
        return
    ex.route_name = route.name
    ex.body_limit = route.max_body
    if route.max_body and (
        (ex.content_length or 0) > route.max_body or ex.body_bytes > route.max_body
    ):
        ex.send_response(json_error(413, "request_too_large", close=True))
        return
    ctx = RequestContext(
        ex.method,
        path,
        raw_query.decode("latin-1"),
        host,
        ex.headers,
        ex.lookup,
        ex.conn.client_ip,
        ex.conn.scheme,
        ex.request_id,
        ex.http_version,
    )
    ctx.route = route
    ctx.runtime = runtime
    chain = route.chain_for(host)
    for step in chain.request:
        answer = await step.on_request(ctx)
        if answer is not None:
            _add_response_headers(ctx, answer)
            ex.send_response(answer)
            return
    await _proxy(worker, runtime, ex, ctx, route, chain, raw_query)


def _add_response_headers(ctx: RequestContext, response: Response) -> None:
    if ctx.response_set:
        names = set(ctx.response_set)
        response.headers = [h for h in response.headers if h[0].lower() not in names]
        response.headers.extend(ctx.response_set.values())


async def _proxy(
    worker: Worker,
    runtime: Runtime,
    ex: Exchange,
    ctx: RequestContext,
    route: RouteRuntime,
    chain: Chain,
    raw_query: bytes,
) -> None:
    pool = route.pool
    if ex.chunked_in:
        framing = _CHUNKED
    elif ex.content_length is not None:
        framing = b"Content-Length: %d\r\n" % ex.content_length
    else:
        framing = b""
    head = upstream_head(
        ctx,
        pool,
        raw_query,
        framing=framing,
        preserve_host=route.preserve_host,
        trusted_peer=ex.conn.trusted,
        upgrade=ex.upgrade,
        identity_names=runtime.identity_names,
        identity_prefixes=runtime.identity_prefixes,
    )
    loop = worker.loop
    for attempt in (0, 1):
        try:
            upstream = await pool.acquire()
        except (TimeoutError, OSError) as exc:
            worker.metrics.upstream_error(pool.name, "connect")
            reason = (
                "timed out connecting"
                if isinstance(exc, asyncio.TimeoutError)
                else "refused the connection"
            )
            ex.send_response(json_error(502, "upstream_unavailable", f"the upstream {reason}"))
            return
        if ex.conn.closed:
            upstream.release(reusable=True)
            return
        ex.done = loop.create_future()
        future = upstream.send(ex, head, ex.method == "HEAD")
        ex.attach(upstream)
        try:
            status, headers = await future
            break
        except UpstreamTimeout:
            ex.detach()
            worker.metrics.upstream_error(pool.name, "timeout")
            ex.send_response(
                json_error(504, "upstream_timeout", "the upstream did not answer in time")
            )
            return
        except UpstreamClosed as exc:
            ex.detach()
            upstream.close()
            retry = (
                attempt == 0
                and upstream.reused
                and exc.sent_nothing_back
                and ex.body_sent == 0
                and ex.method in IDEMPOTENT
                and not ex.conn.closed
            )
            if retry:
                continue
            worker.metrics.upstream_error(pool.name, "reset")
            ex.send_response(json_error(502, "upstream_unavailable", str(exc)))
            return
    else:  # pragma: no cover - the loop always breaks or returns
        return

    response = ResponseHead(status, headers)
    for step in chain.response:
        step.on_response(ctx, response)
    if ctx.response_set:
        names = set(ctx.response_set)
        response.headers = [h for h in response.headers if h[0].lower() not in names]
        response.headers.extend(ctx.response_set.values())
    if response.status == 101 and ex.upgrade:
        upgrade = b"Connection: upgrade\r\nUpgrade: " + _header(headers, b"upgrade") + b"\r\n"
        ex.write_head(101, response.headers, length=None, extra=upgrade)
        ex.tunnel_open()
        await ex.done
        upstream.release(reusable=False)
        ex.closing = True
        return
    if ex.upgrade:
        ex.closing = True  # the client parser stopped at the Upgrade head: this connection ends
    length = _content_length(headers)
    ex.response_until_close = (
        length is None
        and not _is_chunked(headers)
        and status not in (204, 304)
        and status >= 200
        and ex.method != "HEAD"
    )
    ex.write_head(response.status, response.headers, length=length)
    clean = await ex.done
    upstream.release(reusable=clean and ex.body_done and not ex.conn.closed)
    ex.detach()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key.lower() == name:
            return value
    return b""


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length").strip()
    return int(value) if value.isdigit() else None


def _is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return b"chunked" in _header(headers, b"transfer-encoding").lower()


def health_body(ready: bool) -> Response:
    return json_response(200 if ready else 503, {"status": "ok" if ready else "draining"})
