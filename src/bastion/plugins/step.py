"""Step, the part of a plugin that serves requests; compiled with the hot path (hot_path.py).

Apart from plugins/base.py so that a plugin's Step can be compiled too (mypyc: a compiled class
derives only from a compiled one) while the Plugin classes, which only build, stay Python.
Plugins import these names from plugins/base.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from bastion.gateway.context import RequestContext, ResponseHead
    from bastion.gateway.responses import Response


class Later:
    """`on_request_now`'s answer when the step must await something: run `on_request`."""


LATER: Final = Later()


@mypyc_attr(allow_interpreted_subclasses=True)  # most plugins' Steps are Python
class Step:
    """A plugin bound to one scope (instance, route rule or domain rule) of one config.

    Override on_request, on_response or both; the pipeline calls only what a Step overrides.
    A step whose common case needs no await (a cached token) may also override on_request_now:
    the pipeline tries it first and starts no task when every step answers at once.
    """

    async def on_request(self, ctx: RequestContext) -> Response | None:
        """Answer the request (return a Response) or change what goes upstream (return None)."""
        return None

    def on_request_now(self, ctx: RequestContext) -> Response | Later | None:
        """on_request's answer when it can be given without awaiting, else LATER (and nothing
        changed). Must agree with on_request."""
        return LATER

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        """See, and possibly change, the upstream's status and headers."""

    def response_statuses(self) -> frozenset[int] | None:
        """The upstream statuses on_response acts on, or None for every one; read once, when the
        chain is built. A response whose status no step of its chain acts on goes to the client
        without the response pass (no ResponseHead, no re-rendered head). on_response must still
        leave other statuses alone: another step's status can run the pass."""
        return None

    @property
    def handles_request(self) -> bool:
        return type(self).on_request is not Step.on_request

    @property
    def handles_response(self) -> bool:
        return type(self).on_response is not Step.on_response
