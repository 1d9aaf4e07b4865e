"""`headers` plugin: the smallest complete plugin, proving the contract from config to upstream."""

from __future__ import annotations

from bastion.config.model import Model
from bastion.gateway.context import RequestContext, ResponseHead
from bastion.gateway.responses import Response
from bastion.plugins.base import Plugin, Step
from bastion.plugins.headers.schema import HeadersConfig


class HeadersStep(Step):
    """Applies one HeadersConfig; the edits are encoded once, here, not per request."""

    def __init__(self, config: HeadersConfig) -> None:
        self.request_set = [(n, v) for n, v in config.request.set.items()]
        self.request_remove = list(config.request.remove)
        response_remove = {n.lower() for n in config.response.remove}
        response_remove.update(n.lower() for n in config.response.set)
        self.response_remove = frozenset(n.encode("latin-1") for n in response_remove)
        self.response_set = [
            (n.encode("latin-1"), v.encode("latin-1")) for n, v in config.response.set.items()
        ]

    async def on_request(self, ctx: RequestContext) -> Response | None:
        for name in self.request_remove:
            ctx.remove_upstream_header(name)
        for name, value in self.request_set:
            ctx.set_upstream_header(name, value)
        return None

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        if self.response_remove:
            head.headers = [h for h in head.headers if h[0].lower() not in self.response_remove]
        head.headers.extend(self.response_set)


class HeadersPlugin(Plugin):
    NAME = "headers"
    PRIORITY = 10  # after authentication (oauth: 350), so it can see and adjust what auth set
    Config = HeadersConfig
    Rule = HeadersConfig

    def bind(self, rule: Model) -> Step | None:
        config = rule
        assert isinstance(config, HeadersConfig)
        step = HeadersStep(config)
        if not (
            step.request_set or step.request_remove or step.response_set or step.response_remove
        ):
            return None
        return step
