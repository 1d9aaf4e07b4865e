"""The one source of "now": wall time for tokens, monotonic time for timeouts; tests replace it."""

from __future__ import annotations

import time


class Clock:
    """Injectable clock; a test subclass moves time without sleeping."""

    def time(self) -> float:
        """Seconds since the epoch (token iat/exp)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (deadlines)."""
        return time.monotonic()


SYSTEM_CLOCK = Clock()
