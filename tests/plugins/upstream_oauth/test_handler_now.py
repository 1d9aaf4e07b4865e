"""UpstreamOAuthStep.on_request_now: a live token goes upstream without a task; else LATER."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bastion.ops.metrics import Metrics
from bastion.plugins.base import LATER
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import Ctx, FakeClock
from tests.plugins.upstream_oauth.test_handler import IdP, bind, make_plugin, sent


def test_a_cold_cache_is_left_to_on_request() -> None:
    clock, idp = FakeClock(), IdP()
    step = bind(make_plugin(idp, clock))
    ctx = Ctx()
    assert step.on_request_now(ctx) is LATER
    assert ctx.headers_set_upstream() == {} and not idp.requests


def test_a_live_token_is_sent_now_and_counted_once(tmp_path: Path) -> None:
    clock, idp, metrics = FakeClock(), IdP(), Metrics()
    store = SqliteStore(tmp_path / "s.db", clock=clock.time)  # where purges are published
    plugin = make_plugin(idp, clock, store=store, metrics=metrics)
    step = bind(plugin)

    async def go() -> None:
        first = Ctx()
        assert await step.on_request(first) is None  # the miss fetches the token
        now = Ctx(headers={"Authorization": "Bearer client-token"})
        assert step.on_request_now(now) is None
        assert sent(now) == sent(first) == "Bearer tok-1"
        clock.advance(1.1)  # the purge topic is due a look: that needs the store
        assert step.on_request_now(Ctx()) is LATER
        await plugin.aclose()
        await store.aclose()

    asyncio.run(go())
    assert metrics.token_cache == {"miss": 1, "hit": 1}


def test_an_expired_token_is_left_to_on_request() -> None:
    clock, idp = FakeClock(), IdP()
    plugin = make_plugin(idp, clock)
    step = bind(plugin)

    async def go() -> None:
        assert await step.on_request(Ctx()) is None
        clock.advance(400)  # past expires_in 300 - eagerly_expire 5
        assert step.on_request_now(Ctx()) is LATER
        await plugin.aclose()

    asyncio.run(go())
