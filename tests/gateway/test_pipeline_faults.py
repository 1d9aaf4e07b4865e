"""The pipeline fails closed: a plugin whose store is down gets the request a 503, never a pass."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from bastion.config.loader import load_config_text
from bastion.config.model import Model
from bastion.gateway.connection import ClientConnection
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response
from bastion.gateway.runtime import build_runtime
from bastion.gateway.server import Worker
from bastion.gateway.upstream import UpstreamConnection
from bastion.ops.metrics import Metrics
from bastion.plugins import registry
from bastion.plugins.base import Plugin, Step
from bastion.store.base import StoreUnavailable


class _Empty(Model):
    pass


class _StoreDown(Step):
    async def on_request(self, ctx: RequestContext) -> Response | None:
        raise StoreUnavailable("redis at 127.0.0.1:1 refused the connection")


class StoreBackedPlugin(Plugin):
    NAME: ClassVar[str] = "store-backed"
    PRIORITY: ClassVar[int] = 300
    Config = _Empty
    Rule = _Empty

    def bind(self, rule: Model) -> Step | None:
        return _StoreDown()


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


CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
plugins: {store-backed: {}}
"""


def test_store_unavailable_in_a_plugin_is_a_503_and_nothing_goes_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.PLUGINS, StoreBackedPlugin.NAME, StoreBackedPlugin)

    async def scenario() -> tuple[bytes, list[bytes]]:
        config = load_config_text(CONFIG)
        worker = Worker.__new__(Worker)
        worker.config, worker.loop = config, asyncio.get_running_loop()
        worker.metrics, worker.connections, worker.draining = Metrics(), set(), False
        worker.runtime = await build_runtime(config, worker.loop)
        pool = worker.runtime.pools["up"]
        upstream = UpstreamConnection(pool)
        upstream_transport = FakeTransport()
        upstream.connection_made(upstream_transport)  # type: ignore[arg-type]
        pool.idle.append(upstream)
        client = ClientConnection(worker, "http")
        client_transport = FakeTransport()
        client.connection_made(client_transport)  # type: ignore[arg-type]
        client.data_received(b"GET /private HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(10):  # the plugin runs in a task
            await asyncio.sleep(0)
        return b"".join(client_transport.out), upstream_transport.out

    answer, sent_upstream = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert answer.endswith(b'{"error":"store_unavailable"}')
    assert sent_upstream == []
