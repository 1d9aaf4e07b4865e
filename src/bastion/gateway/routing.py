"""Route selection: host patterns, path normalization, and the most-specific-wins RouteMatcher.

The exact rules are written for users in docs/routing.md; keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")


class BadPath(ValueError):
    """The request target cannot be a path (bad percent-encoding, not origin-form)."""


def normalize_path(path: str) -> str:
    """One canonical form of a request path, used for matching, plugin rules and forwarding.

    RFC 3986 §6.2.2: percent-encoded unreserved characters are decoded (`%61` → `a`, `%2e` → `.`),
    other escapes get upper-case hex (`%2f` → `%2F`, never decoded to `/`), bytes outside
    printable ASCII are percent-encoded; then runs of `/` collapse to one and dot-segments are
    removed (§5.2.4), so `//admin`, `/a/../admin`, `/%2e%2e/admin` and `/%61dmin` all become
    `/admin`. A `..` above the root stays at the root.
    """
    if not path.startswith("/"):
        raise BadPath("the request target must start with '/'")
    # str methods, not a regex search: printable ASCII without `%` or space needs no escaping
    escapes = not (path.isascii() and path.isprintable()) or "%" in path or " " in path
    if not escapes and "//" not in path and "/." not in path:
        return path  # the common case: already canonical
    if escapes:
        path = _normalize_escapes(path)
    return _remove_dot_segments(path)


def _normalize_escapes(path: str) -> str:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == "%":
            hex2 = path[i + 1 : i + 3]
            if len(hex2) != 2 or not set(hex2) <= _HEX:
                raise BadPath("invalid percent-encoding in the path")
            byte = int(hex2, 16)
            out.append(chr(byte) if byte in _UNRESERVED else "%" + hex2.upper())
            i += 3
            continue
        code = ord(ch)
        if code > 0x7E or code < 0x21:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape")))
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    segments = path.split("/")
    stack: list[str] = []
    for segment in segments[1:-1]:
        if segment == "..":
            if stack:
                stack.pop()
        elif segment not in (".", ""):
            stack.append(segment)
    last = segments[-1]
    if last == "..":
        if stack:
            stack.pop()
        last = ""
    elif last == ".":
        last = ""
    stack.append(last)
    return "/" + "/".join(stack) if stack != [""] else "/"


def host_of(value: str) -> str:
    """Host header → lower-case name without port or trailing dot (`A.com:80` → `a.com`)."""
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    host = host.split(":", 1)[0]
    return host[:-1] if host.endswith(".") else host


class DomainTable(Generic[T]):
    """Values keyed by exact hosts and `*.suffix` patterns (any depth, never the apex)."""

    __slots__ = ("_exact", "_wild")

    def __init__(self, entries: Sequence[tuple[str, T]]) -> None:
        self._exact: dict[str, T] = {}
        self._wild: dict[str, T] = {}  # ".example.com" -> value
        for pattern, value in entries:
            if pattern.startswith("*."):
                self._wild[pattern[1:]] = value
            else:
                self._exact[pattern] = value

    def __bool__(self) -> bool:
        return bool(self._exact or self._wild)

    def matches(self, host: str) -> Iterator[T]:
        """Values whose pattern matches `host`, most specific first: exact, longest wildcard…"""
        value = self._exact.get(host)
        if value is not None:
            yield value
        if self._wild:
            dot = host.find(".")
            while dot >= 0:
                value = self._wild.get(host[dot:])
                if value is not None and dot > 0:
                    yield value
                dot = host.find(".", dot + 1)

    def best(self, host: str) -> T | None:
        for value in self.matches(host):
            return value
        return None


class _PathGroup(Generic[T]):
    """The routes of one host pattern: exact paths, then regexes in file order, then prefixes."""

    # (not a dataclass: mypyc compiles this module, and cannot compile a generic dataclass)
    def __init__(self) -> None:
        self.exact: dict[str, T] = {}
        self.regex: list[tuple[re.Pattern[str], T]] = []
        self.prefix: list[tuple[str, T]] = []

    def match(self, path: str) -> T | None:
        found = self.exact.get(path)
        if found is not None:
            return found
        for pattern, value in self.regex:
            if pattern.fullmatch(path):
                return value
        for prefix, value in self.prefix:
            if path.startswith(prefix):
                return value
        return None


class RouteSpec(Generic[T]):
    """What the matcher needs of a route: where it listens and the value to return."""

    # (not a dataclass: see _PathGroup)
    def __init__(self, domains: Sequence[str], path: str, path_type: str, value: T) -> None:
        self.domains = domains
        self.path = path
        self.path_type = path_type
        self.value = value


class RouteMatcher(Generic[T]):
    """Picks the route for (host, path): the most specific host group with a matching path.

    Host groups are tried from the most specific (exact host, then the longest `*.suffix`, then
    routes without domains) to the least; inside a group an exact path wins, then regexes in file
    order (whole-path match), then the longest prefix. File order never decides between a longer
    and a shorter match.
    """

    def __init__(self, specs: Sequence[RouteSpec[T]]) -> None:
        groups: dict[str | None, _PathGroup[T]] = {}
        for spec in specs:
            domains: Sequence[str | None] = spec.domains or [None]
            for domain in domains:
                group = groups.setdefault(domain, _PathGroup())
                if spec.path_type == "exact":
                    group.exact.setdefault(spec.path, spec.value)
                elif spec.path_type == "regex":
                    group.regex.append((re.compile(spec.path), spec.value))
                else:
                    group.prefix.append((spec.path, spec.value))
        for group in groups.values():
            group.prefix.sort(
                key=lambda item: len(item[0]), reverse=True
            )  # stable: ties keep order
        self._any = groups.pop(None, None)
        self._hosts: DomainTable[_PathGroup[T]] = DomainTable(
            [(d, g) for d, g in groups.items() if d is not None]
        )
        self._has_hosts = bool(self._hosts)

    def match(self, host: str, path: str) -> T | None:
        if self._has_hosts:
            for group in self._hosts.matches(host):
                found = group.match(path)
                if found is not None:
                    return found
        return self._any.match(path) if self._any is not None else None


def shadowed_routes(specs: Sequence[RouteSpec[T]]) -> list[tuple[int, int]]:
    """Pairs (i, j): route j has the same domain, path and type as an earlier route i."""
    seen: dict[tuple[str | None, str, str], int] = {}
    pairs: list[tuple[int, int]] = []
    for j, spec in enumerate(specs):
        domains: Sequence[str | None] = spec.domains or [None]
        for domain in domains:
            key = (domain, spec.path_type, spec.path)
            if key in seen and seen[key] != j:
                pairs.append((seen[key], j))
                break
            seen.setdefault(key, j)
    return pairs
