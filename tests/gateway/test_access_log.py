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
def log_stream() -> Iterator[io.BytesIO]:
    stream = io.BytesIO()
    saved = LOG.__dict__.copy()
    LOG.__init__(stream)  # type: ignore[misc]  # the access lines go here, then back
    yield stream
    LOG.__dict__.update(saved)


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
