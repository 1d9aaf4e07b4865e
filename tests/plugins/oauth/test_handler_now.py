"""OAuthStep.on_request_now: the task-free answer agrees with on_request, and defers otherwise."""

from __future__ import annotations

import asyncio

import pytest

from bastion.plugins.base import LATER
from bastion.store.sqlite import SqliteStore
from tests.plugins.oauth.support import (
    Ctx,
    FakeClock,
    bearer,
    claims,
    forge,
    instance_step,
    make_plugin,
    rule_step,
)


def test_an_unverified_token_is_left_to_on_request(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    ctx = Ctx(headers=bearer(forge(claims(clock))))
    assert step.on_request_now(ctx) is LATER
    assert ctx.headers_set_upstream() == {} and ctx.consumer is None  # nothing changed


def test_a_cached_token_is_admitted_now_exactly_as_on_request_does(
    store: SqliteStore, clock: FakeClock
) -> None:
    step = instance_step(make_plugin(store, clock))
    token = forge(claims(clock))
    first = Ctx(headers=bearer(token))
    assert asyncio.run(step.on_request(first)) is None  # verified, revocation checked, cached
    now = Ctx(headers=bearer(token))
    assert step.on_request_now(now) is None
    assert (now.consumer, now.headers_set_upstream(), now.upstream_remove) == (
        first.consumer, first.headers_set_upstream(), first.upstream_remove,
    )  # fmt: skip


def test_stale_revocations_defer_to_on_request(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    token = forge(claims(clock))
    assert asyncio.run(step.on_request(Ctx(headers=bearer(token)))) is None
    clock.advance(1.1)  # the revocation list must be polled again: that needs the store
    assert step.on_request_now(Ctx(headers=bearer(token))) is LATER


def test_stale_revocations_defer_a_cached_token_without_verifying_it_again(
    store: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request in the poll's window would otherwise pay a signature check (~4 proxied
    requests' worth) that the cache already holds the answer to."""
    step = instance_step(make_plugin(store, clock))
    token = forge(claims(clock))
    first = Ctx(headers=bearer(token))
    assert asyncio.run(step.on_request(first)) is None  # verified, revocation checked, cached
    verified: list[str] = []
    verify = step.codec.verify
    monkeypatch.setattr(step.codec, "verify", lambda t: verified.append(t) or verify(t))
    clock.advance(1.1)  # the revocation list is due a read
    assert step.on_request_now(Ctx(headers=bearer(token))) is LATER
    assert verified == []
    later = Ctx(headers=bearer(token))
    assert asyncio.run(step.on_request(later)) is None  # polled, then admitted from the cache
    assert later.consumer == first.consumer and verified == []
    forged = forge(claims(clock), secret="not-the-consumer-secret-at-all-0123")
    clock.advance(1.1)
    answer = step.on_request_now(Ctx(headers=bearer(forged)))  # unknown: verified, 401 now
    assert answer is not LATER and answer is not None and answer.status == 401
    assert verified == [forged]


def test_a_cached_token_of_a_consumer_not_allowed_is_403_now(
    store: SqliteStore, clock: FakeClock
) -> None:
    plugin = make_plugin(store, clock)
    token = forge(claims(clock))
    assert asyncio.run(instance_step(plugin).on_request(Ctx(headers=bearer(token)))) is None
    narrow = rule_step(plugin, allow=["consumer2"])
    assert asyncio.run(narrow.on_request(Ctx(headers=bearer(token)))) is not None  # 403, cached
    answer = narrow.on_request_now(Ctx(headers=bearer(token)))
    assert answer is not LATER and answer is not None
    assert (answer.status, answer.body) == (403, b"Access Denied")


def test_token_requests_are_left_to_on_request(store: SqliteStore, clock: FakeClock) -> None:
    step = instance_step(make_plugin(store, clock))
    token = forge(claims(clock))
    assert asyncio.run(step.on_request(Ctx(headers=bearer(token)))) is None
    assert step.on_request_now(Ctx(path="/api/oauth2/token", headers=bearer(token))) is LATER


def test_401s_that_need_no_store_are_answered_now_as_on_request_does(
    store: SqliteStore, clock: FakeClock
) -> None:
    step = instance_step(make_plugin(store, clock))
    forged = forge(claims(clock), secret="not-the-consumer-secret-at-all-0123")
    for headers in ({}, {"Authorization": "Basic abc"}, bearer(forged), bearer("garbage")):
        now = step.on_request_now(Ctx(headers=headers))
        later = asyncio.run(step.on_request(Ctx(headers=headers)))
        assert now is not LATER and now is not None and later is not None
        assert (now.status, now.body, now.headers) == (later.status, later.body, later.headers)
        assert now.status == 401
