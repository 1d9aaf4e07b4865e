"""ops.logging: secret query parameters never reach a log, whatever their spelling; JSON lines
batched inside an event loop, written whole and in order."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from bastion.ops.logging import SECRET_PARAMS, JsonLog, redact_query


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
@pytest.mark.parametrize(
    "spell",
    [
        str.lower,
        str.upper,
        str.title,
        lambda n: n.replace("_", "%5F"),  # decoded to the name by the upstream
        lambda n: n.replace("k", "\u212a"),  # KELVIN SIGN: lower() makes it "k"
        lambda n: f"+{n}+",  # a form's spaces around the name
    ],
)
def test_every_spelling_of_a_secret_name_is_redacted(
    name: str, spell: Callable[[str], str]
) -> None:
    spelled = spell(name)
    assert redact_query(f"a=1&{spelled}=s3cret&b=2") == f"a=1&{spelled}=REDACTED&b=2"


@pytest.mark.parametrize(
    "query",
    ["", "x=1", "page=2&sort=name", "codex", "encode=1&passwords=2", "a=client_secret", "q=%41"],
)
def test_other_queries_are_kept_as_they_are(query: str) -> None:
    assert redact_query(query) == query


class FailingStream(io.BytesIO):
    """A stream whose writes fail while `failing` is set (a closed or full stdout)."""

    failing = False

    def write(self, data: Any) -> int:
        if self.failing:
            raise OSError("no space left on device")
        return super().write(data)


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    stream = io.BytesIO()
    log = JsonLog(stream)
    log.info("started", port=8080)
    log.write_line(b'{"a":1}\n')
    first, second = stream.getvalue().splitlines()
    record = orjson.loads(first)
    assert (record["level"], record["msg"], record["port"]) == ("info", "started", 8080)
    assert second == b'{"a":1}'


def test_in_a_loop_lines_are_batched_and_written_whole_in_order() -> None:
    stream = io.BytesIO()
    log = JsonLog(stream)
    lines = [b'{"n":%d,"pad":"%s"}\n' % (n, b"x" * 200) for n in range(400)]

    async def scenario() -> tuple[bytes, bytes]:
        log.write_line(lines[0])
        held = stream.getvalue()  # nothing yet: the batch waits for the loop's timer
        for line in lines[1:]:  # past 64 KiB: a batch written without waiting
            log.write_line(line)
        before_timer = stream.getvalue()
        await asyncio.sleep(0.2)
        return held, before_timer

    held, before_timer = asyncio.run(scenario())
    assert held == b""
    assert before_timer and before_timer.endswith(b"\n")  # whole lines only
    assert len(before_timer) < sum(map(len, lines))
    assert stream.getvalue() == b"".join(lines)  # the rest after the delay, in order


def test_a_batch_the_stream_refused_is_dropped_and_the_next_written() -> None:
    stream = FailingStream()
    log = JsonLog(stream)

    async def scenario() -> None:
        stream.failing = True
        log.write_line(b'{"lost":1}\n')
        log.flush()  # refused: the gateway keeps going
        stream.failing = False
        log.write_line(b'{"kept":1}\n')
        log.flush()

    asyncio.run(scenario())
    assert stream.getvalue() == b'{"kept":1}\n'
