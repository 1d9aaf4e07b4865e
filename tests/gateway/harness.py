"""The data path without sockets: a Worker's serving parts, one pooled upstream connection and
one client connection, each on a fake transport that keeps what is written to it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bastion.config.loader import load_config_text
from bastion.gateway.connection import ClientConnection
from bastion.gateway.runtime import build_runtime
from bastion.gateway.server import Worker
from bastion.gateway.upstream import UpstreamConnection, UpstreamPool
from bastion.ops.metrics import Metrics


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

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


@dataclass
class Wired:
    client: ClientConnection
    client_transport: FakeTransport
    upstream: UpstreamConnection
    upstream_transport: FakeTransport
    pool: UpstreamPool


async def wire(config_text: str, service: str) -> Wired:
    """A runtime built from `config_text`, a client connection, and one idle pooled connection
    to `service` (the one its first request will take)."""
    config = load_config_text(config_text)
    worker = Worker.__new__(Worker)  # the parts of a Worker the data path uses, no listeners
    worker.config, worker.loop = config, asyncio.get_running_loop()
    worker.metrics, worker.connections, worker.draining = Metrics(), set(), False
    worker.runtime = await build_runtime(config, worker.loop)
    pool = worker.runtime.pools[service]
    upstream = UpstreamConnection(pool)
    upstream_transport = FakeTransport()
    upstream.connection_made(upstream_transport)  # type: ignore[arg-type]
    pool.idle.append(upstream)
    client = ClientConnection(worker, "http")
    client_transport = FakeTransport()
    client.connection_made(client_transport)  # type: ignore[arg-type]
    return Wired(client, client_transport, upstream, upstream_transport, pool)
