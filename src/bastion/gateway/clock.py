"""The one source of "now": wall time for tokens, monotonic time for timeouts; tests replace it."""

from __future__ import annotations

import time
from typing import Final

from mypy_extensions import mypyc_attr

# The system's clocks as C statics once compiled (importers in the hot path get the static too):
# `time.time()`, or a name imported from time, is a look-up by name at each call
wall: Final = time.time
monotonic: Final = time.monotonic
perf_counter: Final = time.perf_counter


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled with the hot path; tests subclass it
class Clock:
    """Injectable clock; a test subclass moves time without sleeping."""

    def time(self) -> float:
        """Seconds since the epoch (token iat/exp)."""
        return wall()

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (deadlines)."""
        return monotonic()


SYSTEM_CLOCK: Final = Clock()
