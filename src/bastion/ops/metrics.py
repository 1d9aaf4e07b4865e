"""Request metrics kept as plain counters per worker, and the sum of several workers' counters.

Counting is a dict increment on the hot path, compiled with it (gateway/hot_path.py);
ops/exposition.py renders a snapshot, or the sum of every worker's (`--workers N`), in the
Prometheus format.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

# (annotated tuple[float, ...]: mypyc keeps a fixed-length tuple of floats unboxed, as a C struct,
# and boxes all fifteen into a new tuple at every use)
BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def bucket_of(seconds: float) -> int:
    """The index of the first bucket whose bound is >= `seconds` (len(BUCKETS): +Inf), as
    bisect_left does; a scan, since most requests end in the first buckets (a C loop, compiled),
    where mypyc calls bisect through the module's attribute."""
    index = 0
    for bound in BUCKETS:
        if seconds <= bound:
            break
        index += 1
    return index


class Count:
    """One counter, held by whoever counts it: compiled, an increment is a native add, where a
    dict's count is two look-ups and a new int object."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class RouteStats:
    """One route's requests: a Count per status, one per latency bucket (not cumulative; the
    last is +Inf), and the sum of seconds, a native double once compiled. Counting a request
    allocates nothing (a dict of ints and a list of floats made two new objects per request)."""

    __slots__ = ("buckets", "seconds", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, Count] = {}
        self.buckets = [Count() for _ in range(len(BUCKETS) + 1)]
        self.seconds = 0.0

    def status(self, status: int) -> Count:
        count = self.statuses.get(status)
        if count is None:
            count = self.statuses[status] = Count()
        return count

    def latency_row(self) -> list[float]:
        """[count per bucket ..., +Inf count, sum], the snapshot's form."""
        return [*(float(c.n) for c in self.buckets), self.seconds]


class Metrics:
    """One worker's counters."""

    __slots__ = (
        "active_connections", "auth", "idp_latency", "idp_requests", "last_route",
        "last_stats", "reloads", "routes", "store_down", "token_cache", "upstream_errors",
    )  # fmt: skip

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}
        # the route counted last: the next request is often on it (a str compared by identity,
        # the route's name from its config, before a dict look-up)
        self.last_route = ""
        self.last_stats: RouteStats | None = None
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.active_connections = 0
        self.reloads: dict[str, int] = {"ok": 0, "error": 0}
        # plugin → outcome → count; a plugin step holds the Counts it increments per request
        self.auth: dict[str, dict[str, Count]] = {}
        self.store_down = 0  # 1 while this worker's last store check failed
        self.token_cache: dict[str, int] = {}  # upstream-oauth: hit / miss
        self.idp_requests: dict[str, int] = {}  # by outcome: ok, network, timeout, status, ...
        self.idp_latency = [0.0] * (len(BUCKETS) + 2)

    def observe(self, route: str, status: int, seconds: float) -> None:
        stats = self.last_stats
        if stats is None or route is not self.last_route:
            stats = self.route_stats(route)
            self.last_route, self.last_stats = route, stats
        stats.status(status).n += 1
        stats.buckets[bucket_of(seconds)].n += 1
        stats.seconds += seconds

    def route_stats(self, route: str) -> RouteStats:
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        return stats

    def upstream_error(self, service: str, kind: str) -> None:
        key = (service, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def cache_event(self, kind: str) -> None:
        self.token_cache[kind] = self.token_cache.get(kind, 0) + 1

    def idp_request(self, seconds: float, outcome: str) -> None:
        self.idp_requests[outcome] = self.idp_requests.get(outcome, 0) + 1
        self.idp_latency[bucket_of(seconds)] += 1
        self.idp_latency[-1] += seconds

    def auth_outcome(self, plugin: str, outcome: str) -> None:
        """One authentication decision: `ok`, `invalid_token`, `denied`, `issued`, ..."""
        self.auth_count(plugin, outcome).n += 1

    def auth_count(self, plugin: str, outcome: str) -> Count:
        """The counter of one plugin's outcome, made at its first use; the same one for the
        worker's life (a reloaded config's steps count on in it)."""
        outcomes = self.auth.get(plugin)
        if outcomes is None:
            outcomes = self.auth[plugin] = {}
        count = outcomes.get(outcome)
        if count is None:
            count = outcomes[outcome] = Count()
        return count

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy, for the admin process to merge."""
        return {
            "requests": [
                [r, s, c.n] for r, stats in self.routes.items() for s, c in stats.statuses.items()
            ],
            "latency": {r: stats.latency_row() for r, stats in self.routes.items()},
            "upstream_errors": [[s, k, n] for (s, k), n in self.upstream_errors.items()],
            "active_connections": self.active_connections,
            "reloads": dict(self.reloads),
            "auth": [[p, o, c.n] for p, row in self.auth.items() for o, c in row.items()],
            "store_down": self.store_down,
            "token_cache": dict(self.token_cache),
            "idp_requests": dict(self.idp_requests),
            "idp_latency": list(self.idp_latency),
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum several workers' snapshots into one."""
    total = Metrics()
    for snap in snapshots:
        for route, status, n in snap.get("requests", []):
            total.route_stats(route).status(status).n += n
        for route, theirs in snap.get("latency", {}).items():
            if not theirs:
                continue
            stats = total.route_stats(route)
            *counts, seconds = theirs
            for count, value in zip(stats.buckets, counts, strict=False):
                count.n += int(value)
            stats.seconds += seconds
        for service, kind, n in snap.get("upstream_errors", []):
            total.upstream_errors[(service, kind)] = (
                total.upstream_errors.get((service, kind), 0) + n
            )
        total.active_connections += snap.get("active_connections", 0)
        for result, n in snap.get("reloads", {}).items():
            total.reloads[result] = total.reloads.get(result, 0) + n
        for plugin, outcome, n in snap.get("auth", []):
            total.auth_count(plugin, outcome).n += n
        total.store_down += snap.get("store_down", 0)  # workers whose store check failed
        for kind, n in snap.get("token_cache", {}).items():
            total.token_cache[kind] = total.token_cache.get(kind, 0) + n
        for outcome, n in snap.get("idp_requests", {}).items():
            total.idp_requests[outcome] = total.idp_requests.get(outcome, 0) + n
        for i, value in enumerate(snap.get("idp_latency", [])[: len(total.idp_latency)]):
            total.idp_latency[i] += value
    return total.snapshot()
