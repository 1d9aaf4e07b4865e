"""ops.metrics: per-worker counters, their snapshot, and the merge of several workers'."""

from __future__ import annotations

import bisect

from bastion.ops.metrics import BUCKETS, Metrics, bucket_of, merge


def test_observe_counts_by_route_and_status_with_a_latency_row() -> None:
    metrics = Metrics()
    metrics.observe("api", 200, 0.0004)
    metrics.observe("api", 200, 0.002)
    metrics.observe("api", 404, 0.002)
    metrics.observe("web", 200, 40.0)
    snap = metrics.snapshot()
    assert sorted(map(tuple, snap["requests"])) == [
        ("api", 200, 2),
        ("api", 404, 1),
        ("web", 200, 1),
    ]
    api = snap["latency"]["api"]
    assert len(api) == len(BUCKETS) + 2
    assert api[0] == 1  # ≤ 0.5 ms
    assert api[BUCKETS.index(0.0025)] == 2
    assert api[-2] == 0 and abs(api[-1] - 0.0044) < 1e-9  # nothing past 30 s; the sum
    assert snap["latency"]["web"][-2] == 1  # +Inf


def test_merge_sums_workers() -> None:
    one, two = Metrics(), Metrics()
    one.observe("api", 200, 0.001)
    two.observe("api", 200, 0.001)
    two.observe("api", 503, 0.001)
    merged = merge([one.snapshot(), two.snapshot()])
    assert sorted(map(tuple, merged["requests"])) == [("api", 200, 2), ("api", 503, 1)]
    assert merged["latency"]["api"][BUCKETS.index(0.001)] == 3


def test_bucket_of_is_bisect_left_on_every_edge() -> None:
    # a bound belongs to its own bucket (Prometheus `le`), as bisect_left places it
    probes = [0.0, *BUCKETS, *(b * 0.999 for b in BUCKETS), *(b * 1.001 for b in BUCKETS), 1e9]
    for seconds in probes:
        assert bucket_of(seconds) == bisect.bisect_left(BUCKETS, seconds), seconds
    assert bucket_of(1e9) == len(BUCKETS)  # +Inf


def test_auth_outcomes_are_counted_by_plugin_and_outcome_and_merged() -> None:
    first, second = Metrics(), Metrics()
    for _ in range(3):
        first.auth_outcome("oauth", "ok")
    first.auth_outcome("oauth", "invalid_token")
    first.auth_outcome("oidc", "ok")
    second.auth_outcome("oauth", "ok")
    assert sorted(map(tuple, first.snapshot()["auth"])) == [
        ("oauth", "invalid_token", 1),
        ("oauth", "ok", 3),
        ("oidc", "ok", 1),
    ]
    merged = merge([first.snapshot(), second.snapshot()])
    assert sorted(map(tuple, merged["auth"])) == [
        ("oauth", "invalid_token", 1),
        ("oauth", "ok", 4),
        ("oidc", "ok", 1),
    ]


def test_a_held_count_is_the_one_the_snapshot_reads() -> None:
    metrics = Metrics()
    held = metrics.auth_count("oauth", "ok")
    assert metrics.auth_count("oauth", "ok") is held  # a reloaded step gets the same one
    held.n += 2
    metrics.auth_outcome("oauth", "ok")
    assert metrics.snapshot()["auth"] == [["oauth", "ok", 3]]


def test_interleaved_routes_and_equal_names_count_where_they_belong() -> None:
    """Metrics remembers the route counted last, by identity: an equal name that is another
    object, or another route in between, still counts on its own route."""
    metrics = Metrics()
    api = "api"
    same = "".join(["a", "pi"])  # equal to "api", not the same object
    for route, status in [(api, 200), ("web", 200), (api, 500), (same, 200), (same, 200)]:
        metrics.observe(route, status, 0.001)
    snap = metrics.snapshot()
    assert sorted(map(tuple, snap["requests"])) == [
        ("api", 200, 3),
        ("api", 500, 1),
        ("web", 200, 1),
    ]
    assert snap["latency"]["api"][BUCKETS.index(0.001)] == 4
    assert merge([snap, snap])["latency"]["api"][-1] == 2 * snap["latency"]["api"][-1]
