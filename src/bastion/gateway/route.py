"""What the hot path reads of a route: its plugin chains, its upstream pool (runtime.py builds it).

Compiled with the hot path (gateway/hot_path.py): every request reads these fields, and a field
of a compiled class is a C struct member, not an attribute looked up by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.gateway.routing import DomainTable
    from bastion.gateway.upstream import UpstreamPool
    from bastion.plugins.step import Step


class Chain:
    """The steps of one route for one class of hosts, in priority order. Not changed once built."""

    __slots__ = ("request", "response", "response_statuses")

    def __init__(
        self,
        request: tuple[Step, ...] = (),
        response: tuple[Step, ...] = (),
        response_statuses: frozenset[int] | None = None,
    ) -> None:
        self.request = request
        self.response = response
        # the statuses some response step acts on; None: every status (Step.response_statuses)
        self.response_statuses = response_statuses


class RouteRuntime:
    """A route as the hot path needs it."""

    __slots__ = ("chains", "default_chain", "max_body", "name", "pool", "preserve_host")

    def __init__(
        self,
        name: str,
        pool: UpstreamPool,
        max_body: int,
        preserve_host: bool,
        chains: DomainTable[Chain] | None,
        default_chain: Chain,
    ) -> None:
        self.name = name
        self.pool = pool
        self.max_body = max_body
        self.preserve_host = preserve_host
        self.chains = chains
        self.default_chain = default_chain

    def chain_for(self, host: str) -> Chain:
        if self.chains is None:
            return self.default_chain
        found = self.chains.best(host)
        return found if found is not None else self.default_chain
