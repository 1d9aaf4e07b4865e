"""The one source of "now": wall time for tokens, monotonic time for timeouts; tests replace it."""

from __future__ import annotations

import time
from typing import Final

from mypy_extensions import mypyc_attr

# C statics once compiled: `time.time()` would look the attribute up by name per call
_wall: Final = time.time
_monotonic: Final = time.monotonic


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled with the hot path; tests subclass it
class Clock:
    """Injectable clock; a test subclass moves time without sleeping."""

    def time(self) -> float:
        """Seconds since the epoch (token iat/exp)."""
        return _wall()

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (deadlines)."""
        return _monotonic()


SYSTEM_CLOCK: Final = Clock()
