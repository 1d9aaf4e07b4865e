"""TopicWatch: a node's view of a store topic, re-read at most once a second, inline.

A change made on one node (`Store.bump(topic)`) reaches every node within a poll interval: the
first request after the interval reads the version (one read shared by every request waiting),
and a new version calls `changed`. No timer runs, so nothing outlives its Runtime. A failed read
raises StoreUnavailable to the request, which fails closed (SPEC §10).
"""

from __future__ import annotations

import asyncio

from bastion.gateway.clock import Clock
from bastion.store.base import Store

POLL_INTERVAL = 1.0  # seconds; issue 4: a change is seen by every node within one second


class TopicWatch:
    # a compiled plugin step reads `fresh_until` per request: a slot is found on the type, where
    # an instance dict is searched after it (subclasses may still have a dict of their own)
    __slots__ = ("_pending", "clock", "fresh_until", "store", "topic", "version")

    def __init__(self, store: Store, topic: str, clock: Clock) -> None:
        self.store = store
        self.topic = topic
        self.clock = clock
        self.version: int | None = None  # None until the first successful read
        self.fresh_until = 0.0  # monotonic; until then the last read stands
        self._pending: asyncio.Future[None] | None = None

    def stale(self) -> bool:
        return self.clock.monotonic() >= self.fresh_until

    async def refresh(self) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(self._poll())
            pending.add_done_callback(self._done)
        await asyncio.shield(pending)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._pending = None
        if not future.cancelled():
            future.exception()  # each waiter gets it through its shield

    async def _poll(self) -> None:
        version = await self.store.version(self.topic)
        if version != self.version:
            await self.changed(self.version)
            self.version = version
        self.fresh_until = self.clock.monotonic() + POLL_INTERVAL

    async def changed(self, previous: int | None) -> None:
        """The topic moved (or is read for the first time: `previous` is None)."""
