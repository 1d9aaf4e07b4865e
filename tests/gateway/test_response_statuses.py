"""Step.response_statuses: a response whose status no step of the chain acts on goes to the
client without the response pass, byte for byte as without the step; a status one acts on runs
the pass; a step that acts on every status runs it for all, and then every response step sees
the response (so each must leave the statuses it does not act on alone)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from bastion.config.model import Model
from bastion.gateway.context import RequestContext, ResponseHead
from bastion.gateway.route import Chain
from bastion.gateway.runtime import _chain
from bastion.plugins import registry
from bastion.plugins.base import Plugin, Step
from tests.gateway.harness import wire


class _Empty(Model):
    pass


class _Marker(Step):
    """Adds `x-seen-<name>: <status>` to the response head; acts on `statuses`."""

    def __init__(self, name: str, statuses: frozenset[int] | None) -> None:
        self.name, self.statuses = name, statuses

    def response_statuses(self) -> frozenset[int] | None:
        return self.statuses

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        head.set(f"x-seen-{self.name}", str(head.status))


def _plugin(name: str, priority: int, statuses: frozenset[int] | None) -> type[Plugin]:
    class Marking(Plugin):
        NAME: ClassVar[str] = name
        PRIORITY: ClassVar[int] = priority
        Config = _Empty
        Rule = _Empty

        def bind(self, rule: Model) -> Step | None:
            return _Marker(name, statuses)

    return Marking


ON_401 = _plugin("on-401", 300, frozenset({401, 403}))
ON_ALL = _plugin("on-all", 200, None)
CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""


def exchange(plugins: list[str], status: int) -> bytes:
    """One request through the pipeline with `plugins`; the upstream answers `status`."""
    text = CONFIG + (
        f"plugins: {{{', '.join(f'{p}: {{}}' for p in plugins)}}}\n" if plugins else ""
    )

    async def scenario() -> bytes:
        wired = await wire(text, "up")
        wired.client.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0)
        reason = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found"}[status]
        wired.upstream.data_received(
            b"HTTP/1.1 %d %b\r\nServer: up\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\nhi"
            % (status, reason)
        )
        return b"".join(wired.client_transport.out)

    return asyncio.run(scenario())


def without_volatile(answer: bytes) -> bytes:
    """The answer without its Date and X-Request-Id lines, which differ from one run to the next."""
    lines = answer.split(b"\r\n")
    return b"\r\n".join(x for x in lines if not x.lower().startswith((b"date:", b"x-request-id:")))


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for plugin in (ON_401, ON_ALL):
        monkeypatch.setitem(registry.PLUGINS, plugin.NAME, plugin)


@pytest.mark.parametrize("status", [200, 404])
def test_a_status_no_step_acts_on_skips_the_response_pass(status: int) -> None:
    answer = exchange(["on-401"], status)
    assert b"x-seen" not in answer
    assert without_volatile(answer) == without_volatile(exchange([], status))


def test_a_status_a_step_acts_on_runs_it() -> None:
    answer = exchange(["on-401"], 401)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"x-seen-on-401: 401\r\n" in answer


def test_a_step_on_every_status_runs_the_pass_for_every_step() -> None:
    answer = exchange(["on-401", "on-all"], 200)
    assert b"x-seen-on-all: 200\r\n" in answer
    assert b"x-seen-on-401: 200\r\n" in answer  # called, though its statuses do not hold 200


def test_the_chain_holds_the_union_of_its_steps_statuses() -> None:
    only = _Marker("a", frozenset({401}))
    other = _Marker("b", frozenset({403, 500}))
    every = _Marker("c", None)
    assert _chain([(1, "a", only), (2, "b", other)]).response_statuses == {401, 403, 500}
    assert _chain([(1, "a", only), (2, "c", every)]).response_statuses is None
    assert _chain([(1, "a", only)]).response_statuses == {401}
    assert Chain().response_statuses is None and Chain().response == ()
