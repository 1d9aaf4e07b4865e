"""The pipeline fails closed: a plugin whose store is down gets the request a 503, never a pass."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from bastion.config.model import Model
from bastion.gateway.context import RequestContext
from bastion.gateway.responses import Response
from bastion.plugins import registry
from bastion.plugins.base import Plugin, Step
from bastion.store.base import StoreUnavailable
from tests.gateway.harness import wire


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
        wired = await wire(CONFIG, "up")
        wired.client.data_received(b"GET /private HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(10):  # the plugin runs in a task
            await asyncio.sleep(0)
        return b"".join(wired.client_transport.out), wired.upstream_transport.out

    answer, sent_upstream = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert answer.endswith(b'{"error":"store_unavailable"}')
    assert sent_upstream == []
