"""The limit on failed client authentications, per client id and per address (SPEC §4, §10).

Counted in the store, so every node shares the count. A failure adds one to both counters (each
in its own fixed window); the one that reaches `max_failures` locks its key for `window` seconds.
A locked key gets 429 with Retry-After before its secret is even looked at, so a correct guess
during a lockout is worth nothing.
"""

from __future__ import annotations

import math

from bastion.gateway.clock import Clock
from bastion.plugins.oauth.schema import Lockout
from bastion.store.base import Store

COUNTERS = "auth-failures"
LOCKS = "lockouts"


class FailureLimit:
    def __init__(self, store: Store, config: Lockout, clock: Clock) -> None:
        self.store = store
        self.max_failures = config.max_failures
        self.window = config.window
        self.clock = clock

    @staticmethod
    def keys(client_id: str, address: str) -> tuple[str, str]:
        return f"oauth:id:{client_id}", f"oauth:ip:{address}"

    async def retry_after(self, client_id: str, address: str) -> int | None:
        """Seconds until the lockout on this client id or address ends; None when neither is."""
        longest: float | None = None
        now = self.clock.time()
        for key in self.keys(client_id, address):
            value = await self.store.get(LOCKS, key)
            if value is not None:
                try:
                    left = float(value) - now
                except ValueError:
                    left = self.window
                longest = max(longest or 0.0, left)
        return None if longest is None else max(1, math.ceil(longest))

    async def failed(self, client_id: str, address: str) -> None:
        for key in self.keys(client_id, address):
            count = await self.store.incr(COUNTERS, key, self.window)
            if count >= self.max_failures:
                until = self.clock.time() + self.window
                await self.store.put(LOCKS, key, repr(until).encode(), ttl=self.window)
