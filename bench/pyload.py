"""A small keep-alive HTTP/1.1 load generator, used only by `bench/run --quick` when wrk is absent.

Run as `python bench/pyload.py URL --duration S --connections N [--header 'Name: value']...
[--expect STATUS]`; prints one JSON object with the same fields bench.py reads from wrk (with
`--expect`, also the count of answers whose status was not STATUS, as bench/status.lua does).
It is far slower than wrk and its numbers are not comparable with wrk's: it only proves that
requests go through.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    unexpected: int = 0
    read_errors: int = 0
    connect_errors: int = 0


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    await reader.readexactly(int(headers.get("content-length", "0")))


async def _client(
    host: str, port: int, request: bytes, expect: bytes, deadline: float, tally: Tally
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.connect_errors += 1
        return
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await _read_body(reader, head)
            tally.latencies.append(time.perf_counter() - start)
            if head[9:10] != b"2":
                tally.non_2xx += 1
            if head[9:12] != expect:
                tally.unexpected += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        tally.read_errors += 1
    finally:
        writer.close()


def _percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def run(
    url: str, duration: float, connections: int, headers: list[str], expect: int | None
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{header}\r\n" for header in headers)
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    status = str(expect or 200).encode()
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(
        *(_client(host, port, request, status, deadline, tally) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    counted = {"unexpected_status": tally.unexpected} if expect else {}
    return {
        "requests": len(tally.latencies),
        "duration_s": elapsed,
        "requests_per_s": len(tally.latencies) / elapsed,
        "p50_ms": _percentile_ms(tally.latencies, 0.50),
        "p99_ms": _percentile_ms(tally.latencies, 0.99),
        "non_2xx": tally.non_2xx,
        "socket_errors": {
            "connect": tally.connect_errors,
            "read": tally.read_errors,
            "write": 0,
            "timeout": 0,
        },
        **counted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--expect", type=int, help="the status every answer must have")
    args = parser.parse_args()
    result = run(args.url, args.duration, args.connections, args.header, args.expect)
    print(json.dumps(asyncio.run(result)))


if __name__ == "__main__":
    main()
