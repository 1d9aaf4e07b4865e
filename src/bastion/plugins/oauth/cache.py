"""The verified-token cache: a token verified once is not verified again until it expires.

Bounded (the oldest entries go first), never holds a failure, never answers past a token's
exp (plus the skew), and is dropped whole on revocation and key rotation (DESIGN.md).
Compiled with the hot path (gateway/hot_path.py), VerifiedToken with it: a cached request reads
its fields natively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class VerifiedToken:
    """What a request needs of a verified token (tokens.py makes them)."""

    consumer: str
    aud: str
    scopes: frozenset[str]
    exp: int
    jti: str


MAX_ENTRIES: Final = 10_000


class VerifiedCache:
    __slots__ = ("entries", "last_entry", "last_token", "limit", "skew")

    def __init__(self, skew: int, limit: int = MAX_ENTRIES) -> None:
        #: keyed by the auth header's value as sent ("Bearer <token>"): a hit needs no parsing
        self.entries: dict[bytes, VerifiedToken] = {}
        self.skew = skew
        self.limit = limit
        # the entry found last: a client sends one token many times in a row, and comparing
        # ~300 bytes is a fraction of hashing them for the dict (bench/PROFILE.md)
        self.last_token = b""
        self.last_entry: VerifiedToken | None = None

    def get(self, token: bytes, now: float) -> VerifiedToken | None:
        if token == self.last_token:
            entry = self.last_entry
        else:
            entry = self.entries.get(token)
            self.last_token, self.last_entry = token, entry
        if entry is not None and now > entry.exp + self.skew:
            self.entries.pop(token, None)
            self._forget_last()
            return None
        return entry

    def put(self, token: bytes, verified: VerifiedToken) -> None:
        entries = self.entries
        if len(entries) >= self.limit:
            # dicts keep insertion order: drop the oldest eighth in one go
            for key in list(entries)[: max(1, self.limit // 8)]:
                del entries[key]
        entries[token] = verified
        self._forget_last()  # it may have been a miss for this token, or evicted

    def clear(self) -> None:
        self.entries.clear()
        self._forget_last()

    def _forget_last(self) -> None:
        self.last_token, self.last_entry = b"", None
