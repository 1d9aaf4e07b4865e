"""Give the memory that loading a config used and freed back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import gc


def release_free_memory() -> None:
    """Once a worker has started: YAML parsing and the config's schemas leave freed blocks in the
    C heap that glibc keeps for reuse; a worker is long-lived and does not need them back."""
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to trim
    trim(0)
