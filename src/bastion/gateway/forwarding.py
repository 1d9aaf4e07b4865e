"""What goes upstream: the request head, minus hop-by-hop and identity headers, plus X-Forwarded-*.

One header-stripping rule for the whole gateway (DESIGN.md "Habits"): RFC 9110 §7.6.1 hop-by-hop
headers and those the client names in `Connection` are dropped; identity headers that only the
gateway may set (SPEC §10) are dropped whatever their `_`/`-` spelling; framing, Host,
X-Forwarded-* and X-Request-Id are rebuilt by the gateway.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from librt.strings import BytesWriter

from bastion.gateway.responses import add_header

if TYPE_CHECKING:
    from bastion.gateway.context import RequestContext
    from bastion.gateway.upstream import UpstreamPool

Header = tuple[bytes, bytes]

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: rebuilt by the gateway, never copied from the client
REBUILT: Final = frozenset(
    {
        b"content-length",
        b"expect",
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
    }
)
DROPPED: Final = HOP_BY_HOP | REBUILT
#: identity headers only the gateway sets (SPEC §10); plugins may add names at config load
IDENTITY_NAMES: Final = frozenset({b"x-mse-consumer"})
IDENTITY_PREFIXES: Final[tuple[bytes, ...]] = (b"x-auth-request-", b"eg-consumer-")

_REQUEST_ID: Final = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class _RandomIds:
    """128-bit random ids from a refilled pool: one getrandom() per 256 ids, not per request,
    in hex at refill (a str slice per id, not a bytes.hex() call by name)."""

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(16 * 256).hex(), 0
        start = self._at
        self._at += 32
        return self._pool[start : start + 32]


_IDS: Final = _RandomIds()


def request_id(incoming: bytes | None) -> str:
    """Keep a well-formed incoming X-Request-Id, else 128 random bits in hex."""
    if incoming is not None and _REQUEST_ID.match(incoming):
        return incoming.decode("ascii")
    return _IDS.next()


_NO_TOKENS: Final[frozenset[bytes]] = frozenset()


def connection_tokens(value: bytes | None) -> frozenset[bytes]:
    """Header names listed in `Connection` (RFC 9110 §7.6.1), lower-case."""
    # the usual values, compared (a memcmp each) before a set look-up would hash a new bytes
    if (
        not value or value == b"keep-alive" or value == b"close" or value == b"Keep-Alive"
        or value == b"Close"
    ):  # fmt: skip
        return _NO_TOKENS
    return frozenset(t.strip().lower() for t in value.split(b",")) - {b"close", b"keep-alive", b""}


def is_identity(name: bytes, names: frozenset[bytes], prefixes: tuple[bytes, ...]) -> bool:
    """`name` (lower-case) is a gateway-only identity header, in either `_` or `-` spelling."""
    if b"_" in name:
        name = name.replace(b"_", b"-")
    return name in names or name.startswith(prefixes)


#: a header-name memo keeps names up to NAME_KEPT bytes long, and at most VERDICTS_KEPT of them
NAME_KEPT: Final = 64
VERDICTS_KEPT: Final = 512
#: a PlaceMemo keeps the names of a head's first SEEN_KEPT headers
SEEN_KEPT: Final = 32

V = TypeVar("V")


class PlaceMemo(Generic[V]):
    """The header names of the last head a client connection (or a service) sent, in order, and
    what was looked up for each. Clients and services repeat their names in the same order, and
    comparing with the name at the same place is a memcmp, where a dict look-up hashes a bytes
    object parsed this request (~400 instructions a header, bench/PROFILE.md). Exact (byte
    equality); bounded: SEEN_KEPT places, names up to NAME_KEPT bytes. Readers test
    `names[at] == name` themselves and read `values[at]` (compiled, a method returning a generic
    value would box and check it: ~15 instructions a header more)."""

    __slots__ = ("names", "values")

    def __init__(self) -> None:
        self.names: list[bytes] = []
        self.values: list[V] = []

    def keep(self, at: int, name: bytes, value: V) -> None:
        """`value` is what was looked up for `name`, found at place `at` of this head."""
        # a name too long leaves its place empty: b"" (llhttp never gives an empty name)
        kept = name if len(name) <= NAME_KEPT else b""
        names = self.names
        if at < len(names):
            names[at] = kept
            self.values[at] = value
        elif at == len(names) and at < SEEN_KEPT:
            names.append(kept)
            self.values.append(value)


def not_connected(data: bytes) -> None:
    """A connection's bound transport write until connection_made (callers check first)."""
    raise RuntimeError("not connected")


class ForwardRule:
    """Which request headers never go upstream whatever the request: hop-by-hop, rebuilt and
    identity ones. Built with the config (plugins add identity names); the verdict on each name
    requests carry is remembered, so a request pays one dict lookup per header. The memo is
    bounded in names and name length: a client inventing names costs only the plain checks."""

    __slots__ = ("_verdicts", "identity_names", "identity_prefixes")

    def __init__(
        self,
        identity_names: frozenset[bytes] = IDENTITY_NAMES,
        identity_prefixes: tuple[bytes, ...] = IDENTITY_PREFIXES,
    ) -> None:
        self.identity_names = identity_names
        self.identity_prefixes = identity_prefixes
        self._verdicts: dict[bytes, bool] = {}

    def never_forwarded(self, low: bytes) -> bool:
        """`low` (a lower-case name) is dropped from every request, or rebuilt by the gateway."""
        verdict = self._verdicts.get(low)
        if verdict is None:
            verdict = low in DROPPED or is_identity(
                low, self.identity_names, self.identity_prefixes
            )
            if len(low) <= NAME_KEPT and len(self._verdicts) < VERDICTS_KEPT:
                self._verdicts[low] = verdict
        return verdict


def upstream_head(
    ctx: RequestContext,
    lower_names: list[bytes],
    pool: UpstreamPool,
    raw_query: bytes,
    *,
    framing: bytes,
    preserve_host: bool,
    trusted_peer: bool,
    upgrade: bool,
    rule: ForwardRule,
) -> bytes:
    """The request line and headers to send upstream, as bytes."""
    lookup = ctx.lookup
    connection = lookup.get(b"connection")
    drop_extra = connection_tokens(connection) if connection else _NO_TOKENS
    set_low = ctx.set_low  # the first header a plugin set (RequestContext.set_upstream_pair)
    edits_set = ctx.upstream_set  # the others
    edits_remove = ctx.upstream_remove
    # a header a plugin sets replaces the client's: checked per header only when the client sent
    # one of those names (a plugin's own header, X-Mse-Consumer say, is usually not among them)
    replaces_first = set_low is not None and set_low in lookup
    replaced = edits_set
    if replaced is not None and not any(key in lookup for key in replaced):
        replaced = None
    out = BytesWriter()  # (a C memcpy a piece: responses.head_writer)
    out.write(ctx.method.encode("ascii"))
    out.write(b" ")
    out.write(pool.base_path)
    out.write(ctx.path.encode("ascii"))
    if raw_query:
        out.write(b"?")
        out.write(raw_query)
    out.write(b" HTTP/1.1\r\n")
    forwarded_for: list[bytes] = []
    headers = ctx.headers
    for i, low in enumerate(lower_names):
        if rule.never_forwarded(low) or (drop_extra and low in drop_extra):
            if low == b"x-forwarded-for":
                forwarded_for.append(headers[i][1])  # several lines join as one (RFC 9110 §5.3)
            continue
        if (
            (replaces_first and low == set_low)
            or (replaced is not None and low in replaced)
            or (edits_remove is not None and low in edits_remove)
        ):
            continue
        name, value = headers[i]
        add_header(out, name, value)
    client_host = lookup.get(b"host", b"")
    forwarded_for.append(ctx.client_ip.encode())
    proto = (lookup.get(b"x-forwarded-proto") if trusted_peer else None) or ctx.scheme.encode()
    fwd_host = (lookup.get(b"x-forwarded-host") if trusted_peer else None) or client_host
    host = client_host if preserve_host and client_host else pool.host_header
    xff = forwarded_for[0] if len(forwarded_for) == 1 else b", ".join(forwarded_for)
    if not ctx.edits_own:  # the common case: no plugin edits a header the gateway sets itself
        out.write(b"Host: ")
        out.write(host)
        out.write(b"\r\nX-Forwarded-For: ")
        out.write(xff)
        out.write(b"\r\nX-Forwarded-Proto: ")
        out.write(proto)
        out.write(b"\r\nX-Request-Id: ")
        out.write(ctx.request_id.encode())
        out.write(b"\r\n")
        if fwd_host:
            add_header(out, b"X-Forwarded-Host", fwd_host)
    else:
        rebuilt: list[Header] = [
            (b"Host", host),
            (b"X-Forwarded-For", xff),
            (b"X-Forwarded-Proto", proto),
            (b"X-Request-Id", ctx.request_id.encode()),
        ]
        if fwd_host:
            rebuilt.append((b"X-Forwarded-Host", fwd_host))
        for name, value in rebuilt:
            # a plugin's set or remove wins over the gateway's own value, and never doubles it
            low = name.lower()
            if (
                low != set_low
                and (edits_set is None or low not in edits_set)
                and (edits_remove is None or low not in edits_remove)
            ):
                add_header(out, name, value)
    if upgrade:
        out.write(b"Connection: upgrade\r\n")
        add_header(out, b"Upgrade", lookup.get(b"upgrade", b""))
    first = ctx.set_pair
    if first is not None:
        add_header(out, first[0], first[1])
    if edits_set:
        for raw_name, value in edits_set.values():
            add_header(out, raw_name, value)
    out.write(framing)
    out.write(b"\r\n")
    return out.getvalue()
