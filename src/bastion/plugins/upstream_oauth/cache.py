"""The upstream token cache: one token per `oauth` settings, fetched once, renewed ahead of time.

Kong's cache key and TTL (peers-behaviour §3a): the key is SHA-256 of the `oauth` settings with
keys and list values sorted, so identical settings share one token on every route (and, with the
`redis` strategy, on every node); the TTL is `expires_in - eagerly_expire` (at least 1 s), or
`default_ttl` when the IdP gives no `expires_in`. Beyond Kong:

- single-flight: concurrent misses on one node wait for one IdP request; with `redis`, nodes take
  a lease lock in the store, and the others wait for the token it puts there;
- refresh ahead: past 3/4 of its TTL a token is renewed in the background while requests go on
  using it, so no request waits on the IdP while a token is merely ageing.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from bastion.gateway.clock import Clock
from bastion.idp.token_client import IdpError, TokenRequest, fetch_token
from bastion.ops.logging import LOG
from bastion.ops.metrics import Metrics
from bastion.plugins.upstream_oauth.schema import OAuthSettings
from bastion.store.base import Store

if TYPE_CHECKING:
    import httpx

NAMESPACE = "upstream-tokens"
MIN_TTL = 1.0
REFRESH_AT = 0.75  # of the TTL
RETRY_REFRESH = 1.0  # seconds between background attempts after a failed one
_POLL = 0.05  # seconds between looks at the store while another node fetches


def cache_key(oauth: OAuthSettings) -> str:
    """SHA-256 hex of the settings, keys and list values sorted (Kong's key, so a reordered
    scope list shares the token and a changed secret does not)."""

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return sorted(canonical(v) for v in value)
        return value

    data = orjson.dumps(canonical(oauth.model_dump()), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedToken:
    header_value: str  # "<token_type> <access_token>"
    fetched_at: float
    refresh_at: float
    expires_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"v": self.header_value, "at": self.fetched_at, "ref": self.refresh_at,
             "exp": self.expires_at}
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> CachedToken | None:
        try:
            raw = orjson.loads(data)
            return cls(str(raw["v"]), float(raw["at"]), float(raw["ref"]), float(raw["exp"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class TokenSource:
    """The token of one cache key on this node: memory first, then the shared store (redis
    strategy), then the IdP; see the module docstring."""

    def __init__(
        self,
        key: str,
        request: TokenRequest,
        http: httpx.AsyncClient,
        *,
        eagerly_expire: int,
        default_ttl: int,
        shared: Store | None,
        lock_lease: float,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.key = key
        self.request = request
        self.http = http
        self.eagerly_expire = eagerly_expire
        self.default_ttl = default_ttl
        self.shared = shared
        self.lock_lease = lock_lease
        self.clock = clock
        self.metrics = metrics
        self.current: CachedToken | None = None
        self._pending: asyncio.Future[CachedToken] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._owner = f"{uuid.uuid4()}"
        self.bad: str | None = None  # the last purged token, while its store copy may linger

    async def header_value(self) -> str:
        value = self.cached_value()
        if value is not None:
            return value
        self.metrics.cache_event("miss")
        return (await self._obtain(None)).header_value

    def cached_value(self) -> str | None:
        """The live token's header value (a hit; past 3/4 of its life a renewal starts in the
        background), or None: a miss, for header_value to fetch."""
        token = self.current
        now = self.clock.time()
        if token is None or now >= token.expires_at:
            return None
        self.metrics.cache_event("hit")
        if now >= token.refresh_at and self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh(token))
        return token.header_value

    def purge(self) -> None:
        """Drop this node's copy (an upstream said the token is bad, or an operator asked)."""
        if self.current is not None:
            self.bad = self.current.header_value  # never taken back from the store
        self.current = None

    async def purge_shared(self) -> None:
        if self.shared is not None:
            await self.shared.delete(NAMESPACE, self.key)

    async def _obtain(self, older_than: CachedToken | None) -> CachedToken:
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(self._load(older_than))
            pending.add_done_callback(self._loaded)
        return await asyncio.shield(pending)

    def _loaded(self, future: asyncio.Future[CachedToken]) -> None:
        self._pending = None
        if not future.cancelled() and future.exception() is None:
            self.current = future.result()

    async def _refresh(self, token: CachedToken) -> None:
        try:
            await self._obtain(token)
        except Exception as exc:  # IdpError, StoreUnavailable: the current token serves on
            LOG.warning("upstream-oauth: background refresh failed", error=_reason(exc))
            current = self.current
            if current is token:  # try again in a moment, not on every request
                retry_at = self.clock.time() + RETRY_REFRESH
                self.current = CachedToken(
                    token.header_value, token.fetched_at, retry_at, token.expires_at
                )
        finally:
            self._refreshing = None

    async def _load(self, older_than: CachedToken | None) -> CachedToken:
        if self.shared is None:
            return await self._fetch()
        store = self.shared
        deadline = self.clock.monotonic() + self.lock_lease
        while True:
            found = await self._from_store(older_than)
            if found is not None:
                return found
            if await store.acquire(f"{NAMESPACE}:{self.key}", self._owner, self.lock_lease):
                try:
                    found = await self._from_store(older_than)  # put while we asked
                    if found is not None:
                        return found
                    token = await self._fetch()
                    ttl = max(MIN_TTL, token.expires_at - self.clock.time())
                    await store.put(NAMESPACE, self.key, token.to_json(), ttl=ttl)
                    return token
                finally:
                    await store.release(f"{NAMESPACE}:{self.key}", self._owner)
            if self.clock.monotonic() > deadline:
                raise IdpError("timeout", "another node holds the token lock and put no token")
            await asyncio.sleep(_POLL)

    async def _from_store(self, older_than: CachedToken | None) -> CachedToken | None:
        assert self.shared is not None
        data = await self.shared.get(NAMESPACE, self.key)
        token = CachedToken.from_json(data) if data is not None else None
        if token is None or self.clock.time() >= token.expires_at or token.header_value == self.bad:
            return None
        if older_than is not None and token.fetched_at <= older_than.fetched_at:
            return None  # the copy we are renewing
        return token

    async def _fetch(self) -> CachedToken:
        started = self.clock.monotonic()
        try:
            issued = await fetch_token(self.http, self.request)
        except IdpError as exc:
            self.metrics.idp_request(self.clock.monotonic() - started, exc.kind)
            raise
        self.metrics.idp_request(self.clock.monotonic() - started, "ok")
        now = self.clock.time()
        if issued.expires_in is not None:
            ttl = max(MIN_TTL, issued.expires_in - self.eagerly_expire)
        else:
            ttl = float(self.default_ttl)
        return CachedToken(
            f"{issued.token_type} {issued.access_token}", now, now + ttl * REFRESH_AT, now + ttl
        )


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
