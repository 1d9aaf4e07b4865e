"""Pure-Python cost of one proxied request through the real data path, without sockets.

A ClientConnection and a pooled UpstreamConnection get fake transports; each iteration feeds a
request head to the client side and the upstream's answer to the upstream side, exactly as the
event loop would, and checks that a response came out. It isolates the Python work of the hot
path from the kernel and the event loop (see PROFILE.md). Usage:

    .venv/bin/python bench/python_path.py [--requests N] [--access-log] [--oauth | --upstream-oauth]
        [--profile]

--oauth puts the oauth plugin on the route (bench/systems.py's, a SQLite store in a temporary
folder) and sends a valid token it issued: the cost of a protected route with a cached token.
--upstream-oauth puts the upstream-oauth plugin on the route instead (bench/systems.py's, the
test IdP started as a process on a free port and stopped by pid); the first request fetches the
token, the measured ones find it cached.
--poll-interval sets how often the revocation list is re-read (store/watch.py's POLL_INTERVAL,
1 s): under valgrind a second is a few hundred requests, so instructions.py makes it an hour to
count the cached path alone (at full speed one poll is shared by thousands of requests); the
upstream-oauth plugin's purge list is polled the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import yaml
from systems import (
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    TOKEN_PATH,
    Server,
    start_idp,
    upstream_oauth_plugin,
)

from bastion.config.loader import load_config_text
from bastion.gateway.connection import ClientConnection
from bastion.gateway.runtime import build_runtime
from bastion.gateway.server import Worker
from bastion.gateway.upstream import UpstreamConnection
from bastion.ops.logging import LOG
from bastion.ops.metrics import Metrics
from bastion.store import watch

CONFIG = """
listen: 127.0.0.1:1
access_log: {access_log}
services: [{{name: upstream, url: "http://127.0.0.1:2"}}]
routes: [{{name: all, path: /, service: upstream}}]
"""
OAUTH_CONFIG = """
store: sqlite:///{store}
plugins:
  oauth:
    global_auth: true
    consumers: [{{name: bench, client_id: {client_id}, client_secret: {client_secret}}}]
"""
HEAD = b"GET %b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n%b\r\n"
REQUEST = HEAD % (b"/bench?x=1", b"")
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 05:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 95\r\nConnection: keep-alive\r\n\r\n"
    + b"x"
    * 95
)


class FakeTransport:
    """Just enough of an asyncio transport: writes are kept, flow control is a no-op."""

    def __init__(self) -> None:
        self.written = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.written += 1
        self.last = data

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def measure(
    requests: int, access_log: bool, oauth: bool, idp: Server | None, profile: bool
) -> None:
    text = CONFIG.format(access_log=str(access_log).lower())
    folder = Path(tempfile.mkdtemp(prefix="python-path-"))
    if oauth:
        text += OAUTH_CONFIG.format(
            store=folder / "store.db", client_id=OAUTH_CLIENT_ID, client_secret=OAUTH_CLIENT_SECRET
        )
    if idp is not None:
        plugins = {"plugins": upstream_oauth_plugin(idp.port)}
        text += f"store: sqlite:///{folder / 'store.db'}\n" + yaml.safe_dump(plugins)
    config = load_config_text(text)
    LOG.__init__(open(os.devnull, "wb"))  # noqa: SIM115 - access lines go nowhere, as fast as can be
    worker = Worker.__new__(Worker)  # the parts of a Worker the data path uses, no listeners
    worker.config, worker.loop = config, asyncio.get_running_loop()
    worker.metrics, worker.connections, worker.draining = Metrics(), set(), False
    worker.runtime = await build_runtime(config, worker.loop)
    pool = worker.runtime.pools["upstream"]
    upstream = UpstreamConnection(pool)
    upstream.connection_made(FakeTransport())  # type: ignore[arg-type]
    pool.idle.append(upstream)
    client = ClientConnection(worker, "http")
    client_transport = FakeTransport()
    client.connection_made(client_transport)  # type: ignore[arg-type]

    request = REQUEST
    if oauth:  # a token from the plugin's own endpoint (its answer needs the store: awaited)
        client.data_received(HEAD % (TOKEN_PATH.encode(), b""))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if b"access_token" in client_transport.last:
                break
        found = re.search(rb'"access_token":"([^"]+)"', client_transport.last)
        assert found, client_transport.last
        request = HEAD % (b"/bench?x=1", b"Authorization: Bearer %b\r\n" % found[1])

    async def run(count: int) -> None:
        for _ in range(count):
            client.data_received(request)
            while upstream.exchange is None:  # a plugin went on in a task (the store, ~1/s)
                await asyncio.sleep(0)
            upstream.data_received(RESPONSE)

    await run(2000)  # warm-up
    before = client_transport.written
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    start = time.perf_counter()
    await run(requests)
    elapsed = time.perf_counter() - start
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    assert client_transport.written - before == requests, "a request got no response"
    print(f"{elapsed / requests * 1e6:.2f} us of Python per proxied request ({requests} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--access-log", action="store_true")
    plugin = parser.add_mutually_exclusive_group()
    plugin.add_argument("--oauth", action="store_true", help="a route protected by oauth")
    plugin.add_argument(
        "--upstream-oauth", action="store_true", help="a route with upstream-oauth, token cached"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile (slows it down)")
    parser.add_argument("--poll-interval", type=float, default=watch.POLL_INTERVAL)
    args = parser.parse_args()
    watch.POLL_INTERVAL = args.poll_interval
    uvloop.install()
    idp = None
    if args.upstream_oauth:
        idp = start_idp(Path(tempfile.mkdtemp(prefix="python-path-idp-")), None)
    try:
        asyncio.run(measure(args.requests, args.access_log, args.oauth, idp, args.profile))
    finally:
        if idp is not None:
            idp.stop()


if __name__ == "__main__":
    main()
