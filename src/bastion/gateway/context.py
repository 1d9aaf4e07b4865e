"""RequestContext: what a plugin knows of a request and how it changes what goes upstream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from bastion.gateway.route import RouteRuntime
    from bastion.gateway.runtime import Runtime

Header = tuple[bytes, bytes]

#: the headers forwarding.upstream_head sets itself (lower-case); a plugin's edit of one replaces it
GATEWAY_OWN: Final = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"x-forwarded-host"}
)


# Request header names clients send most, in lower case. Written as literals: compiled, the group
# keeps one object per literal, so the hot path's own look-ups (`lookup.get(b"host")`) meet that
# very object in a request's `lookup` (the connection keys it with these), and the dict matches
# it by identity instead of comparing bytes.
_COMMON_LOWS: Final[tuple[bytes, ...]] = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"content-type", b"content-length", b"authorization", b"cookie", b"referer", b"origin",
    b"cache-control", b"pragma", b"if-none-match", b"if-modified-since", b"upgrade",
    b"transfer-encoding", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"x-request-id", b"x-real-ip", b"sec-fetch-site", b"sec-fetch-mode",
    b"sec-fetch-dest", b"upgrade-insecure-requests", b"dnt", b"priority", b"te", b"via",
)  # fmt: skip
_UNUSUAL_SPELLINGS: Final = {b"x-real-ip": b"X-Real-IP", b"dnt": b"DNT", b"te": b"TE"}


def _usual_spelling(low: bytes) -> bytes:
    """b"x-forwarded-for" -> b"X-Forwarded-For" (and the few that clients write otherwise)."""
    usual = _UNUSUAL_SPELLINGS.get(low)
    return usual if usual is not None else b"-".join(p.capitalize() for p in low.split(b"-"))


#: each common name in its usual spelling and in lower case -> the lower-case name's object
KNOWN_NAMES: Final[dict[bytes, bytes]] = {
    spelling: low for low in _COMMON_LOWS for spelling in (_usual_spelling(low), low)
}


def lookup_key(name: str) -> bytes:
    """The key of header `name` in RequestContext.lookup (lower-case bytes). For a plugin's
    config load: a common name comes back as the object the request's keys are, which a look-up
    at every request then matches by identity."""
    low = name.lower().encode("latin-1")
    return KNOWN_NAMES.get(low, low)


# a plugin's unit tests may subclass it (a fixed body, say), though it is compiled with the hot path
@mypyc_attr(allow_interpreted_subclasses=True)
class RequestContext:
    """One request as the pipeline and the plugins see it; plugins talk to each other only here.

    `headers` are the client's headers as received (names in their original case); `lookup` has
    them by lower-case name. Plugins change what goes upstream with set_upstream_header and
    remove_upstream_header, never by editing `headers`.
    """

    __slots__ = (
        "client_ip",
        "consumer",
        "edits_own",
        "headers",
        "host",
        "http_version",
        "lookup",
        "method",
        "path",
        "query",
        "request_id",
        "response_set",
        "retry_wanted",
        "route",
        "runtime",
        "scheme",
        "set_low",
        "set_pair",
        "state",
        "upstream_remove",
        "upstream_set",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        host: str,
        headers: list[Header],
        lookup: dict[bytes, bytes],
        client_ip: str,
        scheme: str,
        request_id: str,
        http_version: str,
    ) -> None:
        self.method = method
        self.path = path  # normalized (gateway/routing.py), as matched and as forwarded
        self.query = query  # raw query string without "?", "" when absent
        self.host = host  # lower-case, port stripped
        self.headers = headers
        self.lookup = lookup
        self.client_ip = client_ip
        self.scheme = scheme
        self.request_id = request_id
        self.http_version = http_version
        self.route: RouteRuntime | None = None
        self.runtime: Runtime | None = None
        self.consumer: str | None = None
        # the headers plugins set, in the order set: the first in two fields (most requests get
        # one, X-Mse-Consumer say: no dict to make, walk and free), any other in the dict
        self.set_low: bytes | None = None
        self.set_pair: Header | None = None
        self.upstream_set: dict[bytes, Header] | None = None
        self.upstream_remove: set[bytes] | None = None
        self.edits_own = False  # an edit names one of GATEWAY_OWN
        self.response_set: dict[bytes, Header] | None = None
        self.state: dict[str, Any] | None = None
        self.retry_wanted = False

    def retry_upstream(self) -> None:
        """From on_response: send the request upstream once more, after running the request
        plugins again (a fresh upstream token, say). The gateway does it only when it is safe:
        the first answer, and nothing of the request body sent yet; else the answer goes on."""
        self.retry_wanted = True

    async def read_body(self, limit: int) -> bytes:
        """The whole request body, buffered (it still goes upstream if the request does).
        Raises BodyTooLarge past `limit` bytes, ClientGone when the client leaves first."""
        raise NotImplementedError  # the gateway's Exchange implements it

    def header(self, name: str) -> str | None:
        """The client's header value by case-insensitive name (the last one if repeated)."""
        value = self.lookup.get(name.lower().encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    def set_upstream_header(self, name: str, value: str) -> None:
        """Send `name: value` upstream, replacing any value the client sent (and the gateway's
        own Host, X-Forwarded-* or X-Request-Id)."""
        low, pair = upstream_pair(name, value)
        self.set_upstream_pair(low, pair)

    def set_upstream_pair(self, low: bytes, pair: Header) -> None:
        """set_upstream_header for a header built and checked at config load: `low` is its
        lower-case name, `pair` its (name, value) bytes (the hot path skips the encoding)."""
        if self.set_low is None and self.upstream_set is None:
            self.set_low, self.set_pair = low, pair
        elif low == self.set_low:
            self.set_pair = pair
        else:
            if self.upstream_set is None:
                self.upstream_set = {}
            self.upstream_set[low] = pair
        if low in GATEWAY_OWN:
            self.edits_own = True

    def headers_set_upstream(self) -> dict[bytes, Header]:
        """The headers plugins set to go upstream, by lower-case name, in the order set."""
        edits = {self.set_low: self.set_pair} if self.set_low and self.set_pair else {}
        edits.update(self.upstream_set or {})
        return edits

    def header_count(self, low: bytes) -> int:
        """How many times the client sent the header named `low` (lower-case bytes)."""
        return sum(1 for name, _ in self.headers if name.lower() == low)

    def remove_upstream_header(self, name: str) -> None:
        """Do not forward the client's `name` header."""
        self.remove_upstream_key(name.lower().encode("latin-1"))

    def remove_upstream_key(self, low: bytes) -> None:
        """remove_upstream_header for a name lower-cased and encoded at config load."""
        if self.upstream_remove is None:
            self.upstream_remove = set()
        self.upstream_remove.add(low)
        if low in GATEWAY_OWN:
            self.edits_own = True
        if low == self.set_low:
            self.set_low = self.set_pair = None
        if self.upstream_set is not None:
            self.upstream_set.pop(low, None)

    def set_response_header(self, name: str, value: str) -> None:
        """Add or replace `name: value` on the response to the client."""
        _check_value(value)
        if self.response_set is None:
            self.response_set = {}
        raw = name.encode("latin-1")
        self.response_set[raw.lower()] = (raw, value.encode("latin-1"))


def upstream_pair(name: str, value: str) -> tuple[bytes, Header]:
    """The arguments of set_upstream_pair for `name: value`, checked and encoded: a plugin that
    sends the same value many times makes them once (ValueError for CR, LF or NUL)."""
    _check_value(value)
    return lookup_key(name), (name.encode("latin-1"), value.encode("latin-1"))


def _check_value(value: str) -> None:
    # a CR or LF in a header value would let a value start a header of its own
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError("a header value cannot contain CR, LF or NUL")


class ResponseHead:
    """The upstream's status and headers, as `on_response` plugins see and may change them."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: list[Header]) -> None:
        self.status = status
        self.headers = headers

    def remove(self, name: str) -> None:
        low = name.lower().encode("latin-1")
        self.headers = [h for h in self.headers if h[0].lower() != low]

    def set(self, name: str, value: str) -> None:
        _check_value(value)
        self.remove(name)
        self.headers.append((name.encode("latin-1"), value.encode("latin-1")))
