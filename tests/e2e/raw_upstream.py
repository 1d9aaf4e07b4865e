"""Raw HTTP/1.1 on both ends for framing tests: a recording upstream and a client socket.

    python tests/e2e/raw_upstream.py --port N --record FILE

Listens on 127.0.0.1:N. For each request it reads the head up to the blank line, then the body
by Content-Length or chunked framing (minimal parsing, so keep-alive works), appends one JSON line
to FILE and answers `HTTP/1.1 200 OK` with Content-Length 2 and body `ok`. A line holds:

    {"conn": n, "seq": i, "head": "<request line and headers, latin-1>",
     "body": "<base64 of the body bytes as framed on the wire>",
     "decoded": "<base64 of the body after de-chunking>"}

`read_records(FILE)` loads them back for the tests. `RawConn` is the client side: a socket with
a read buffer that sends bytes as given and reads responses one by one (pipelining, 1xx, HEAD).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 1 << 20


def read_records(path: Path) -> list[dict[str, Any]]:
    """The recorded requests, in arrival order, with `head` text and `body`/`decoded` bytes."""
    if not path.exists():
        return []
    text = path.read_text()
    # a record being appended while this reads has no newline yet: it is not there yet
    complete = text[: text.rfind("\n") + 1]
    records = []
    for line in complete.splitlines():
        if line.strip():
            item = json.loads(line)
            item["body"] = base64.b64decode(item["body"])
            item["decoded"] = base64.b64decode(item["decoded"])
            records.append(item)
    return records


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The request line and the header (name, value) pairs, in order, names as sent."""
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    return lines[0], headers


@dataclass
class Resp:
    version: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class RawConn:
    """A client socket with a read buffer, so pipelined responses are read one by one."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the gateway closed the connection")
        self.buf += data

    def peek_until(self, data: bytes) -> bytes:
        """Receive until `data` has arrived; return what is buffered without consuming it."""
        while data not in self.buf:
            self._fill()
        return bytes(self.buf)

    def _until(self, sep: bytes) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            self._fill()
        out = bytes(self.buf[: i + len(sep)])
        del self.buf[: i + len(sep)]
        return out

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, method: str = "GET") -> Resp:
        """Read one response (a 1xx counts as one); the body framed as HTTP/1.1 says."""
        head = self._until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not a status line: {status_line!r}")
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
        resp = Resp(version, int(code), headers, b"")
        te = (resp.header("transfer-encoding") or "").lower()
        if method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
            return resp
        if "chunked" in te:
            body = bytearray()
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                body += self._exact(size + 2)[:-2]
            while self._until(b"\r\n") != b"\r\n":
                pass
            resp.body = bytes(body)
        elif (length := resp.header("content-length")) is not None:
            resp.body = self._exact(int(length))
        else:
            try:
                while True:
                    self._fill()
            except EOFError:
                resp.body, self.buf = bytes(self.buf), bytearray()
        return resp

    def final(self, method: str = "GET") -> Resp:
        """The next final (non-1xx) response."""
        while (resp := self.response(method)).status < 200:
            pass
        return resp

    def closed_by_peer(self) -> bool:
        """True when the gateway closes the connection (EOF or reset) before the timeout."""
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def get(path: str, host: str = "gw.test", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conns = itertools.count(1)

    def write(self, conn: int, seq: int, head: bytes, body: bytes, decoded: bytes) -> None:
        line = json.dumps(
            {
                "conn": conn,
                "seq": seq,
                "head": head.decode("latin-1"),
                "body": base64.b64encode(body).decode(),
                "decoded": base64.b64encode(decoded).decode(),
            }
        )
        # one unbuffered O_APPEND write: a reader sees whole lines, or a last one without its
        # newline (read_records leaves that one for its next read)
        with self.path.open("ab", buffering=0) as f:
            f.write((line + "\n").encode())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(self.conns)
        try:
            for seq in itertools.count(1):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(BAD)
                    return
                _, headers = parse_head(head[:-4])
                fields = {name.strip().lower(): value for name, value in headers}
                body, decoded = await self.read_body(reader, fields)
                self.write(conn, seq, head, body, decoded)
                writer.write(RESPONSE)
                await writer.drain()
                if "close" in fields.get("connection", "").lower():
                    return
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    @staticmethod
    async def read_body(
        reader: asyncio.StreamReader, fields: dict[str, str]
    ) -> tuple[bytes, bytes]:
        if "chunked" in fields.get("transfer-encoding", "").lower():
            raw = bytearray()
            decoded = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers up to the blank line
                        line = await reader.readuntil(b"\r\n")
                        raw += line
                        if line == b"\r\n":
                            return bytes(raw), bytes(decoded)
                data = await reader.readexactly(size + 2)
                raw += data
                decoded += data[:-2]
        length = int(fields.get("content-length", "0") or "0")
        body = await reader.readexactly(length) if length else b""
        return body, body


async def serve(port: int, record: Path) -> None:
    recorder = Recorder(record)
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", port, limit=MAX_HEAD)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.record))


if __name__ == "__main__":
    main()
