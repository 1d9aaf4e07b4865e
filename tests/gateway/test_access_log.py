"""gateway/access_log.py: one access line per exchange, times in milliseconds, secrets redacted."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import orjson
import pytest

from bastion.ops.logging import LOG
from tests.gateway.harness import wire

CONFIG = """
access_log: true
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.BytesIO]:
    LOG.flush()  # lines written before the test stay out of it
    stream = io.BytesIO()
    monkeypatch.setattr(LOG, "_stream", stream)  # the access lines go here, then back
    yield stream
    LOG.flush()


def test_an_exchange_writes_one_line_with_millisecond_times(log_stream: io.BytesIO) -> None:
    async def scenario() -> None:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET /a?Password=s3cret&x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        wired.upstream.data_received(ANSWER)
        LOG.flush()

    asyncio.run(scenario())
    (line,) = log_stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["type"] == "access" and record["status"] == 200 and record["route"] == "all"
    assert record["uri"] == "/a?Password=REDACTED&x=1"
    for field in ("ts", "duration_ms"):  # at most 3 decimals, as the line always had
        value = record[field]
        assert value >= 0 and round(value, 3) == value, (field, value)


FIELDS = [
    "ts", "type", "request_id", "remote", "method", "host", "uri", "route", "status",
    "bytes_in", "bytes_out", "duration_ms",
]  # fmt: skip


def test_each_line_has_its_own_exchanges_values_in_order(log_stream: io.BytesIO) -> None:
    """Two exchanges on one connection: every value is the exchange's own, in the documented
    order (docs/operations.md), none left over from the one before."""

    async def scenario() -> None:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(
            b"POST /first HTTP/1.1\r\nHost: one.example\r\nX-Request-Id: req-1\r\n"
            b"Content-Length: 3\r\n\r\nabc"
        )
        wired.upstream.data_received(ANSWER)
        wired.client.data_received(b"GET /second HTTP/1.1\r\n\r\n")  # no Host: refused, 400
        LOG.flush()

    asyncio.run(scenario())
    first, second = (orjson.loads(line) for line in log_stream.getvalue().splitlines())
    assert list(first) == FIELDS and list(second) == FIELDS
    assert first["request_id"] == "req-1" and first["method"] == "POST"
    assert (first["host"], first["uri"], first["bytes_in"], first["bytes_out"]) == (
        "one.example", "/first", 3, 2,
    )  # fmt: skip
    assert first["remote"] == "127.0.0.1" and first["status"] == 200
    assert (second["request_id"], second["method"], second["host"], second["uri"]) == (
        "", "GET", "", "/second",
    )  # fmt: skip
    assert (second["route"], second["status"], second["bytes_in"]) == ("", 400, 0)
    assert second["bytes_out"] == len(b'{"error":"bad_request","message":"missing Host"}')


def test_client_controlled_text_is_escaped(log_stream: io.BytesIO) -> None:
    """Quotes and backslashes in the target, and a byte above 0x7f in Host, stay inside their
    JSON strings: the line parses, and no field can be forged."""

    async def scenario() -> None:
        wired = await wire(CONFIG, "up")
        wired.client.data_received(
            b'GET /a\\b?q="x" HTTP/1.1\r\nHost: h"},"status":1,"x":"\\\xe9\r\n\r\n'
        )
        wired.upstream.data_received(ANSWER)
        LOG.flush()

    asyncio.run(scenario())
    (line,) = log_stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert list(record) == FIELDS and isinstance(record["status"], int)
    assert record["host"] == 'h"},"status":1,"x":"\\\xe9'
    assert record["uri"] == '/a\\b?q="x"'
