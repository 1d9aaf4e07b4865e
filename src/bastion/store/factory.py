"""Open the store a URL names (SPEC §2): sqlite:///PATH or one of the Redis schemes."""

from __future__ import annotations

from bastion.store.base import Store
from bastion.store.url import parse_store_url


async def open_store(url: str, field_path: str = "store") -> Store:
    """Parse `url` (ConfigError naming `field_path` when malformed) and build its backend."""
    parsed = parse_store_url(url, field_path)
    if parsed.backend == "sqlite":
        from bastion.store.sqlite import SqliteStore  # written alongside; imported lazily

        assert parsed.path is not None
        return SqliteStore(parsed.path)
    from bastion.store.redis import RedisStore

    return RedisStore.from_url(parsed)
