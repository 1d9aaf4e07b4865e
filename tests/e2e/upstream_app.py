"""The test upstream: a real HTTP + WebSocket server for whole-process tests.

    python tests/e2e/upstream_app.py --port N [--port M ...]

Listens on 127.0.0.1 (every `--port` given, one process) with Starlette on uvicorn (httptools,
websockets). Endpoints:

- `/echo...` (any method): 200 JSON `{"method", "path" (raw, as received), "query" (raw),
  "headers": [[name, value], ...] (in order), "body_len", "body_sha256", "port" (the port the
  request arrived on)}`.
- `/slow?seconds=S`: sleeps S seconds, then 200 `slow done`.
- `/status/{code}`: answers that status (204 and 304 without a body).
- `/big?bytes=N`: N pattern bytes in 64 KiB chunks, chunked (no Content-Length);
  `/big-cl?bytes=N`: the same with a Content-Length.
- `/upload` (POST, PUT): reads the body as a stream without keeping it, 200 `{"bytes", "sha256"}`.
- `/chunked`: a chunked body made of several pieces.
- `/head` (GET, HEAD): Content-Length 1234, the body only on GET.
- `/ws`: WebSocket echo of text and binary messages; accepts the first offered subprotocol.
- `/drip?chunks=N&interval=S`: N chunks with a pause of S seconds between them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHUNK = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)  # 64 KiB of 00 01 .. ff repeated
CHUNKED_PIECES = [b"first piece\n", b"second, a bit longer piece\n", b"x" * 5000, b"\nlast\n"]


def pattern_bytes(n: int) -> bytes:
    """The first `n` bytes that /big and /big-cl send (tests compute the expected digest)."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


async def _pattern_stream(n: int) -> AsyncIterator[bytes]:
    left = n
    while left > 0:
        piece = PATTERN if left >= CHUNK else PATTERN[:left]
        left -= len(piece)
        yield piece


async def echo(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    scope = request.scope
    return JSONResponse(
        {
            "method": request.method,
            "path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_len": size,
            "body_sha256": digest.hexdigest(),
            "port": scope["server"][1] if scope.get("server") else None,
        }
    )


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return PlainTextResponse("slow done")


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code in (204, 304) or code < 200:
        return Response(status_code=code)
    return PlainTextResponse(f"status {code}\n", status_code=code)


async def big(request: Request) -> Response:
    n = int(request.query_params.get("bytes", "0"))
    return StreamingResponse(_pattern_stream(n), media_type="application/octet-stream")


async def big_cl(request: Request) -> Response:
    n = int(request.query_params.get("bytes", "0"))
    return StreamingResponse(
        _pattern_stream(n),
        media_type="application/octet-stream",
        headers={"content-length": str(n)},
    )


async def upload(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return JSONResponse({"bytes": size, "sha256": digest.hexdigest()})


async def chunked(request: Request) -> Response:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in CHUNKED_PIECES:
            yield piece
            await asyncio.sleep(0)

    return StreamingResponse(pieces(), media_type="text/plain")


async def head(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(b"", headers={"content-length": "1234"}, media_type="text/plain")
    return Response(b"h" * 1234, media_type="text/plain")


async def drip(request: Request) -> Response:
    chunks = int(request.query_params.get("chunks", "3"))
    interval = float(request.query_params.get("interval", "0.1"))

    async def gen() -> AsyncIterator[bytes]:
        for i in range(chunks):
            if i:
                await asyncio.sleep(interval)
            yield f"drip {i}\n".encode()

    return StreamingResponse(gen(), media_type="text/plain")


async def ws_echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

app = Starlette(
    routes=[
        Route("/echo{rest:path}", echo, methods=ALL),
        Route("/slow", slow, methods=ALL),
        Route("/status/{code:int}", status, methods=ALL),
        Route("/big", big, methods=["GET", "HEAD"]),
        Route("/big-cl", big_cl, methods=["GET", "HEAD"]),
        Route("/upload", upload, methods=["POST", "PUT"]),
        Route("/chunked", chunked, methods=["GET"]),
        Route("/head", head, methods=["GET", "HEAD"]),
        Route("/drip", drip, methods=["GET"]),
        WebSocketRoute("/ws", ws_echo),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    sockets = []
    for port in args.port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        sockets.append(sock)
    config = uvicorn.Config(
        app,
        http="httptools",
        ws="websockets-sansio",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_keep_alive=120,
    )
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
