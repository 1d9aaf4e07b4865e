"""Step (compiled with the hot path): which hooks a Step overrides, for compiled and Python
subclasses alike, and the defaults a Step that overrides nothing answers with."""

from __future__ import annotations

import asyncio

from bastion.gateway.clock import SYSTEM_CLOCK, Clock
from bastion.gateway.context import RequestContext, ResponseHead
from bastion.plugins.base import LATER, Step
from bastion.plugins.oauth.step import OAuthStep
from tests.plugins.oauth.support import Ctx


class RequestOnly(Step):
    async def on_request(self, ctx: RequestContext) -> None:
        return None


class ResponseOnly(Step):
    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        head.set("x-seen", "1")


def test_which_hooks_a_python_step_overrides() -> None:
    assert (Step().handles_request, Step().handles_response) == (False, False)
    assert (RequestOnly().handles_request, RequestOnly().handles_response) == (True, False)
    assert (ResponseOnly().handles_request, ResponseOnly().handles_response) == (False, True)


def test_a_compiled_step_overrides_on_request_only() -> None:
    assert OAuthStep.on_request is not Step.on_request
    assert OAuthStep.on_response is Step.on_response
    assert OAuthStep.on_request_now is not Step.on_request_now


def test_the_defaults() -> None:
    step, ctx = RequestOnly(), Ctx()
    assert step.on_request_now(ctx) is LATER  # not overridden: the pipeline awaits on_request
    assert asyncio.run(Step().on_request(ctx)) is None
    head = ResponseHead(200, [])
    ResponseOnly().on_response(ctx, head)
    assert head.headers == [(b"x-seen", b"1")]


def test_a_python_clock_subclass_replaces_the_compiled_one() -> None:
    class Stopped(Clock):
        def time(self) -> float:
            return 5.0

        def monotonic(self) -> float:
            return 7.0

    stopped: Clock = Stopped()
    assert (stopped.time(), stopped.monotonic()) == (5.0, 7.0)
    assert SYSTEM_CLOCK.monotonic() > 0 and SYSTEM_CLOCK.time() > 1_700_000_000
