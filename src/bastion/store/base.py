"""The Store protocol: what several gateway nodes share, as a few verbs shaped by its uses.

Everything is addressed by a namespace (`codes`, `tokens`, `sessions`, `users`, ...) and a key
inside it; values are opaque bytes (the repositories above encode them). The verbs, and who needs
them:

- records with an optional TTL: get / put / put_if_absent / delete (users, apps, sessions, keys,
  the upstream token cache); an expired record is gone for every verb;
- consume: get-and-delete in one atomic step, so a single-use value (an authorization code, a
  refresh token) is handed out once even when two nodes redeem it at the same instant;
- incr: an atomic counter in a fixed window (failed logins, lockouts, rate limits);
- acquire / release: a lease lock with an owner and an expiry (single-flight across nodes; a dead
  owner's lock frees itself when its lease ends);
- index_add / index_remove / members: secondary look-ups (a user's apps, an app's credentials,
  a token family);
- bump / version: a per-topic change counter that every node polls (at most once a second) to
  see a change made elsewhere (an OIDC rule disabled, a token revoked, keys rotated).

A backend that cannot be reached raises StoreUnavailable; callers answer 503
`{"error": "store_unavailable"}` and never let a request through (SPEC §10).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bastion.errors import BastionError


class StoreUnavailable(BastionError):
    """The store could not be reached or did not answer in time; fail closed."""


@runtime_checkable
class Store(Protocol):
    """The shared store; see the module docstring for the verbs and who uses them."""

    #: "sqlite" or "redis"
    backend: str

    async def get(self, ns: str, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    async def put(self, ns: str, key: str, value: bytes, ttl: float | None = None) -> None:
        """Create or replace; `ttl` in seconds (None: no expiry)."""
        ...

    async def put_if_absent(
        self, ns: str, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        """Create only when absent (or expired); True when this call created it."""
        ...

    async def delete(self, ns: str, key: str) -> bool:
        """True when a live record was deleted."""
        ...

    async def consume(self, ns: str, key: str) -> bytes | None:
        """Get and delete atomically: exactly one caller gets a given value."""
        ...

    async def incr(self, ns: str, key: str, window: float) -> int:
        """Add 1 to a counter that starts at 0 and resets `window` seconds after its first
        increment; the new count."""
        ...

    async def acquire(self, name: str, owner: str, lease: float) -> bool:
        """Take the lock `name` for `owner` for `lease` seconds (True), unless another owner
        holds a live lease (False). The owner taking it again extends its lease."""
        ...

    async def release(self, name: str, owner: str) -> bool:
        """Release the lock if `owner` holds it; True when released."""
        ...

    async def index_add(self, ns: str, key: str, member: str) -> None:
        """Add `member` to the set at (ns, key)."""
        ...

    async def index_remove(self, ns: str, key: str, member: str) -> None:
        """Remove `member` from the set at (ns, key)."""
        ...

    async def members(self, ns: str, key: str) -> set[str]:
        """The set at (ns, key); empty when absent."""
        ...

    async def bump(self, topic: str) -> int:
        """Record a change under `topic`; the new version."""
        ...

    async def version(self, topic: str) -> int:
        """The current version of `topic` (0 when never bumped)."""
        ...

    async def check(self) -> tuple[str, float]:
        """(server version, round-trip seconds) or StoreUnavailable: for `bastion store check`."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; safe to call twice."""
        ...
