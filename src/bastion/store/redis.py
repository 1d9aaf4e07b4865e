"""The Redis backend (SPEC §8): standalone (redis://, rediss://), Sentinel (redis+sentinel://)
and Cluster (redis+cluster://) on redis-py's asyncio clients.

Key layout (every key under `bastion:`; the `{...}` is a Cluster hash tag, so a record and its
companions share one slot while different records spread over the cluster):

- record          bastion:{ns:key}   (`%` and `:` in ns escaped as %25 and %3A)
- counter         bastion:{ns:key}:n
- index (a set)   bastion:{ns:key}:set
- lock            bastion:lock:{name}
- version         bastion:version:{topic}

TTLs are native (SET ... PX, PEXPIRE). Every connection-level failure (refused, timed out, no
master, cluster down, a demoted master answering READONLY during a failover) becomes
StoreUnavailable, whose message never carries the password. Timeouts are 2 s and retries are
off: a call fails fast, and the client reconnects on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from bastion.store.base import StoreUnavailable
from bastion.store.url import StoreUrl

T = TypeVar("T")

_MASTER_CHECK_INTERVAL = 1.0  # seconds between two questions to the sentinels about the master
TIMEOUT = 2.0
# RESP2, named: redis-py 8 speaks RESP3 by default, and with it a maintenance-notification
# handler ("auto") that skips the pool's check for an idle connection the server closed
# (redis-py #4252, fixed by #4260 after 8.1.0). After a Redis restart each such connection then
# failed one command, a needless 503. The store uses nothing RESP3 adds.
RESP = 2
PREFIX = "bastion:"

# INCR, and start the window on the first increment.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# Take the lock when free, or extend it when `owner` already holds it.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: failures that mean "the store cannot be reached right now" (fail closed, 503)
UNAVAILABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes MasterNotFoundError, BusyLoadingError
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.MasterDownError,
    rexc.ReadOnlyError,  # a demoted master during a failover
    rexc.SlotNotCoveredError,
    rexc.RedisClusterException,  # e.g. no cluster node reachable at start
    rexc.MaxConnectionsError,
    rexc.AuthenticationError,  # (a ConnectionError too) wrong password
    rexc.NoPermissionError,  # an ACL user without a command or key it needs
    OSError,
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def record_key(ns: str, key: str) -> str:
    """`bastion:{ns:key}`, the namespace's `%` and `:` escaped so that no two (ns, key) pairs
    share a key."""
    ns = ns.replace("%", "%25").replace(":", "%3A")
    return f"{PREFIX}{{{ns}:{key}}}"


class RedisStore:
    """The Store protocol on Redis; build it with `RedisStore.from_url(parse_store_url(url))`."""

    backend = "redis"

    def __init__(
        self,
        client: Any,
        secrets: tuple[str, ...] = (),
        kind: str = "redis",
        extra: tuple[Any, ...] = (),
    ) -> None:
        self._client = client
        self._extra = extra  # further clients to close (a Sentinel's own connections)
        self._secrets = secrets  # never in a message
        self._kind = kind
        self._closed = False
        # A RedisCluster discovers its nodes on first use; done once, under a lock, before any
        # concurrent command (concurrent discoveries close each other's connections).
        self._discovered = kind != "redis+cluster"
        self._discovery = asyncio.Lock()
        # Sentinel: redis-py asks the sentinels for the master only when it opens a connection,
        # so pooled connections would keep writing to a demoted master; ask at most once a
        # second, and a changed answer drops the idle connections (SentinelConnectionPool)
        self._master_checked = 0.0
        self._incr = client.register_script(_INCR)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, parsed: StoreUrl) -> RedisStore:
        common: dict[str, Any] = {
            "username": parsed.username,
            "password": parsed.password,
            "socket_timeout": TIMEOUT,
            "socket_connect_timeout": TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "protocol": RESP,
        }
        tls: dict[str, Any] = {}
        if parsed.tls:
            tls["ssl"] = True
            # a private CA, a client certificate (?ssl_ca_certs=FILE&ssl_certfile=&ssl_keyfile=)
            for option in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                if parsed.options.get(option):
                    tls[option] = parsed.options[option]
        common.update(tls)
        client: Any
        extra: tuple[Any, ...] = ()
        if parsed.scheme in ("redis", "rediss"):
            host, port = parsed.hosts[0]
            client = Redis(host=host, port=port, db=parsed.db, **common)
        elif parsed.scheme == "redis+sentinel":
            sentinel_kwargs: dict[str, Any] = {
                "socket_timeout": TIMEOUT,
                "socket_connect_timeout": TIMEOUT,
                "retry": Retry(NoBackoff(), 0),
                "protocol": RESP,
            }
            # the sentinels' credentials: the URL's, unless ?sentinel_password= says otherwise
            # (an empty value: the sentinels need none)
            sentinel_kwargs["username"] = parsed.options.get("sentinel_username", parsed.username)
            sentinel_kwargs["password"] = parsed.options.get("sentinel_password", parsed.password)
            for name in ("username", "password"):
                if not sentinel_kwargs[name]:
                    sentinel_kwargs[name] = None
            sentinel_kwargs.update(tls)
            make_sentinel: Any = Sentinel  # redis-py leaves Sentinel.__init__ untyped
            sentinel = make_sentinel(list(parsed.hosts), sentinel_kwargs=sentinel_kwargs)
            client = sentinel.master_for(parsed.service or "mymaster", db=parsed.db, **common)
            extra = tuple(sentinel.sentinels)
        elif parsed.scheme == "redis+cluster":
            client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in parsed.hosts],
                **common,
            )
        else:
            raise ValueError(f"not a Redis URL scheme: {parsed.scheme}")
        secrets = (parsed.password, parsed.options.get("sentinel_password"))
        return cls(client, tuple(s for s in secrets if s), parsed.scheme, extra)

    async def _call(self, thunk: Callable[[], Awaitable[T]]) -> T:
        try:
            if not self._discovered:
                async with self._discovery:
                    if not self._discovered:
                        await self._client.initialize()
                        self._discovered = True
            if self._kind == "redis+sentinel":
                now = time.monotonic()
                if now - self._master_checked >= _MASTER_CHECK_INTERVAL:
                    self._master_checked = now
                    await self._client.connection_pool.get_master_address()
            return await thunk()
        except UNAVAILABLE as exc:
            if self._kind == "redis+cluster":
                self._discovered = False  # rediscover under the lock on the next call
            message = f"{type(exc).__name__}: {str(exc)[:300]}"  # redis-py's can run to KBs
            for secret in self._secrets:
                message = message.replace(secret, "***")
            raise StoreUnavailable(f"redis store unavailable ({self._kind}): {message}") from None

    async def get(self, ns: str, key: str) -> bytes | None:
        value = await self._call(lambda: self._client.get(record_key(ns, key)))
        return None if value is None else bytes(value)

    async def put(self, ns: str, key: str, value: bytes, ttl: float | None = None) -> None:
        px = _ms(ttl) if ttl is not None else None
        await self._call(lambda: self._client.set(record_key(ns, key), value, px=px))

    async def put_if_absent(
        self, ns: str, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        px = _ms(ttl) if ttl is not None else None
        done = await self._call(
            lambda: self._client.set(record_key(ns, key), value, px=px, nx=True)
        )
        return bool(done)

    async def delete(self, ns: str, key: str) -> bool:
        return bool(await self._call(lambda: self._client.delete(record_key(ns, key))))

    async def consume(self, ns: str, key: str) -> bytes | None:
        value = await self._call(lambda: self._client.getdel(record_key(ns, key)))
        return None if value is None else bytes(value)

    async def incr(self, ns: str, key: str, window: float) -> int:
        key_ = record_key(ns, key) + ":n"
        return int(await self._call(lambda: self._incr(keys=[key_], args=[_ms(window)])))

    async def acquire(self, name: str, owner: str, lease: float) -> bool:
        key = f"{PREFIX}lock:{{{name}}}"
        return bool(await self._call(lambda: self._acquire(keys=[key], args=[owner, _ms(lease)])))

    async def release(self, name: str, owner: str) -> bool:
        key = f"{PREFIX}lock:{{{name}}}"
        return bool(await self._call(lambda: self._release(keys=[key], args=[owner])))

    async def index_add(self, ns: str, key: str, member: str) -> None:
        await self._call(lambda: self._client.sadd(record_key(ns, key) + ":set", member))

    async def index_remove(self, ns: str, key: str, member: str) -> None:
        await self._call(lambda: self._client.srem(record_key(ns, key) + ":set", member))

    async def members(self, ns: str, key: str) -> set[str]:
        raw = await self._call(lambda: self._client.smembers(record_key(ns, key) + ":set"))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}

    async def bump(self, topic: str) -> int:
        return int(await self._call(lambda: self._client.incr(f"{PREFIX}version:{{{topic}}}")))

    async def version(self, topic: str) -> int:
        value = await self._call(lambda: self._client.get(f"{PREFIX}version:{{{topic}}}"))
        return int(value) if value is not None else 0

    async def check(self) -> tuple[str, float]:
        info = await self._call(lambda: self._client.info("server"))
        if self._kind == "redis+cluster" and "redis_version" not in info:
            # RedisCluster answers {node: info}; take any node's version
            info = next(iter(info.values()), {})
        started = time.perf_counter()
        await self._call(lambda: self._client.ping())
        return str(info.get("redis_version", "unknown")), time.perf_counter() - started

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in (self._client, *self._extra):
            with contextlib.suppress(*UNAVAILABLE):
                await client.aclose()
