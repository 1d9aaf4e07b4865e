"""httpx, imported without its command-line client (a worker's memory).

`httpx/__init__` imports `httpx._main` (the `httpx` command) when it can, and with it click, and
pygments where installed: ~2.6 MB of a worker that fetches upstream tokens (bench/PROFILE.md),
for a command no Bastion process runs. httpx falls back to a stub `main` when that import fails,
as it does when `httpx[cli]` is not installed. Importing httpx from here makes the import fail
for the length of httpx's own import only: `import httpx._main` works again afterwards. Where
httpx was already imported, this changes nothing.
"""

from __future__ import annotations

import sys

__all__ = ["httpx"]

CLI = "httpx._main"

_block = "httpx" not in sys.modules and CLI not in sys.modules
if _block:
    sys.modules[CLI] = None  # type: ignore[assignment]  # None: `import` raises ImportError
try:
    import httpx
finally:
    if _block:
        del sys.modules[CLI]  # still our None: the failed import stored nothing in its place
