"""The one writer of responses the gateway makes itself: JSON errors, plain text, redirects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import orjson
from librt.strings import BytesWriter

Header = tuple[bytes, bytes]

_JSON: Final = b"application/json"


@dataclass(slots=True)
class Response:
    """A response made by the gateway or a plugin instead of the upstream's."""

    status: int
    body: bytes = b""
    headers: list[Header] = field(default_factory=list)
    close: bool = False  # close the client connection after sending it


def json_response(status: int, payload: object, headers: list[Header] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), [(b"content-type", _JSON), *(headers or [])])


def json_error(
    status: int, error: str, message: str | None = None, *, close: bool = False
) -> Response:
    """`{"error": "...", "message": "..."}`: the body of every error the gateway itself answers."""
    payload = {"error": error, "message": message} if message else {"error": error}
    response = json_response(status, payload)
    response.close = close
    return response


def text_response(status: int, text: str, headers: list[Header] | None = None) -> Response:
    return Response(
        status, text.encode(), [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])]
    )


def www_authenticate(scheme: str, **params: str) -> Header:
    """`WWW-Authenticate: Bearer realm="x", error="invalid_token"` (RFC 6750 §3), quoted safely."""
    parts = ", ".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in params.items()
    )
    return (b"www-authenticate", f"{scheme} {parts}".encode() if parts else scheme.encode())


#: response headers the gateway never relays (hop-by-hop, RFC 9110 §7.6.1); framing is rebuilt
RESPONSE_DROPPED: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
     b"upgrade", b"content-length", b"x-request-id"}
)  # fmt: skip

# Status lines built once: b"HTTP/1.1 200 OK\r\n"
STATUS_LINES: Final[dict[int, bytes]] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


_OK_LINE: Final = STATUS_LINES[200]


def status_line(status: int) -> bytes:
    if status == 200:
        return _OK_LINE  # (a dict look-up boxes the int first)
    line = STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Unknown\r\n".encode()


# Errors of the core, as constants (SPEC §3, §10)
NO_ROUTE: Final = json_error(404, "no_route")


def head_writer(status: int) -> BytesWriter:
    """A response head being written: its status line, then add_header/header_lines, then
    Exchange.write_head ends it. (Compiled, a BytesWriter write is a C memcpy: ~90
    instructions a piece where a list append and its bytes.join piece cost ~200.)"""
    out = BytesWriter()
    out.write(status_line(status))
    return out


def header_lines(out: BytesWriter, headers: Iterable[Header]) -> None:
    """Write `name: value\r\n` for each header."""
    for name, value in headers:
        add_header(out, name, value)


def add_header(out: BytesWriter, name: bytes, value: bytes) -> None:
    """One header line."""
    out.write(name)
    out.write(b": ")
    out.write(value)
    out.write(b"\r\n")
