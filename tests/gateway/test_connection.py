"""connection.request_line_version: the HTTP version read off a chunk's first request line."""

from __future__ import annotations

import pytest

from bastion.gateway.connection import request_line_version


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "1.1"),
        (b"POST /x?y=1 HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "1.0"),
        (b"GET / HTTP/1.1\r\n", "1.1"),
        # llhttp is asked: the line is not whole yet, or not one of the two versions served
        (b"GET / HTTP/1.1", ""),
        (b"GET / HTTP/1.1\r", ""),
        (b"GET / HTTP/2.0\r\n\r\n", ""),
        (b"GET / HTTP/1.2\r\n\r\n", ""),
        (b"GET / http/1.1\r\n\r\n", ""),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", ""),  # an empty line first (llhttp skips it)
        (b"", ""),
        # a bare LF ends the request line: the CRLF after it ends a header, not the line
        (b"GET / HTTP/1.0\nX: a HTTP/1.1\r\n\r\n", ""),
        (b"GET / HTTP/1.0\nX: a HTTP/1.0\r\n\r\n", ""),
    ],
)
def test_request_line_version(data: bytes, version: str) -> None:
    assert request_line_version(data) == version
