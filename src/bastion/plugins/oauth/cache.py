"""The verified-token cache: a token verified once is not verified again until it expires.

Bounded (the oldest entries go first), never holds a failure, never answers past a token's
exp (plus the skew), and is dropped whole on revocation and key rotation (DESIGN.md).
"""

from __future__ import annotations

from bastion.plugins.oauth.tokens import VerifiedToken

MAX_ENTRIES = 10_000


class VerifiedCache:
    __slots__ = ("entries", "limit", "skew")

    def __init__(self, skew: int, limit: int = MAX_ENTRIES) -> None:
        #: keyed by the auth header's value as sent ("Bearer <token>"): a hit needs no parsing
        self.entries: dict[bytes, VerifiedToken] = {}
        self.skew = skew
        self.limit = limit

    def get(self, token: bytes, now: float) -> VerifiedToken | None:
        entry = self.entries.get(token)
        if entry is not None and now > entry.exp + self.skew:
            del self.entries[token]
            return None
        return entry

    def put(self, token: bytes, verified: VerifiedToken) -> None:
        entries = self.entries
        if len(entries) >= self.limit:
            # dicts keep insertion order: drop the oldest eighth in one go
            for key in list(entries)[: max(1, self.limit // 8)]:
                del entries[key]
        entries[token] = verified

    def clear(self) -> None:
        self.entries.clear()
