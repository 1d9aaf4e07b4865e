"""Clients that go away mid-exchange: the gateway drops the upstream side, logs, keeps serving."""

from __future__ import annotations

import json
import socket
import struct
import time

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import ADMIN_TOKEN
from tests.e2e.test_ops import eventually, fetch, metric, scrape


def admin(port: int) -> dict[str, str]:
    return {"listen": f"127.0.0.1:{port}", "token": ADMIN_TOKEN}


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def access_lines(log_lines: list[str], path: str) -> list[dict[str, object]]:
    out = []
    for line in log_lines:
        if line.startswith("{") and f'"{path}' in line:
            record = json.loads(line)
            if record.get("type") == "access":
                out.append(record)
    return out


def test_client_gone_mid_upload_mid_download_and_while_waiting(
    start_gateway: GatewayFactory,
) -> None:
    from tests.e2e.procs import free_port

    admin_port = free_port()
    with start_gateway(admin=admin(admin_port)) as gw:
        # 1. half of a 10 MB upload, then gone
        upload = connect(gw.port)
        upload.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n")
        upload.sendall(b"x" * 2_000_000)
        upload.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        upload.close()
        # 2. a 50 MB download, read a little, then gone
        download = connect(gw.port)
        download.sendall(b"GET /big?bytes=50000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert download.recv(65536).startswith(b"HTTP/1.1 200")
        download.close()
        # 3. waiting on a slow upstream, then gone (a reset: a half-close still gets its answer)
        waiting = connect(gw.port)
        waiting.sendall(b"GET /slow?seconds=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        waiting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        waiting.close()

        assert fetch(gw.url, "/echo/after").status == 200

        def logged() -> None:
            lines = gw.log_lines()
            for path in ("/upload", "/slow"):  # gone before an answer: 499, as nginx logs it
                records = access_lines(lines, path)
                assert records and records[0]["status"] == 499, (path, records)
            # gone during the answer: the status sent, and only part of the body
            (record,) = access_lines(lines, "/big")
            assert record["status"] == 200
            assert isinstance(record["bytes_out"], int) and record["bytes_out"] < 50_000_000

        eventually(logged, timeout=15)

        def no_connection_left() -> None:
            # the admin scrape itself is on another listener: the gateway's own count goes to 0
            assert metric(scrape(gw), "bastion_active_connections") == 0

        eventually(no_connection_left, timeout=15)
        assert "Traceback" not in "\n".join(gw.log_lines())


def test_connection_idle_after_a_slowly_read_response_is_still_closed(
    start_gateway: GatewayFactory,
) -> None:
    # the response fills the send buffer (the gateway pauses), is read to the end, and then the
    # client idles: the keep-alive timer must still close the connection
    with start_gateway(limits={"keepalive_timeout": 1}) as gw:
        client = connect(gw.port)
        client.sendall(b"GET /big-cl?bytes=8000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)  # let the gateway's send buffer fill: it pauses the upstream
        received = b""
        while b"\r\n\r\n" not in received:
            received += client.recv(4096)
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += client.recv(1 << 20)
        client.settimeout(15)
        assert client.recv(1) == b""  # closed by the gateway, not by the 15 s timeout
        client.close()
