"""The Prometheus text exposition of a metrics snapshot (ops/metrics.py).

prometheus-client is loaded only here, by the admin process: a worker's data path never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bastion.ops.metrics import BUCKETS


def render(snapshot: dict[str, Any]) -> bytes:
    """The Prometheus text exposition of a snapshot."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class SnapshotCollector(Collector):
        def collect(self) -> Iterator[Any]:
            return _families(snapshot)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector())
    return generate_latest(registry)


def _families(snap: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    requests = CounterMetricFamily(
        "bastion_requests", "Requests answered, by route and status.", labels=["route", "status"]
    )
    for route, status, n in snap["requests"]:
        requests.add_metric([route, str(status)], n)
    yield requests
    latency = HistogramMetricFamily(
        "bastion_request_duration_seconds",
        "Time from request head to response end.",
        labels=["route"],
    )
    for route, row in snap["latency"].items():
        latency.add_metric([route], _buckets(row), sum_value=row[-1])
    yield latency
    errors = CounterMetricFamily(
        "bastion_upstream_errors",
        "Upstream failures, by service and kind.",
        labels=["service", "kind"],
    )
    for service, kind, n in snap["upstream_errors"]:
        errors.add_metric([service, kind], n)
    yield errors
    yield GaugeMetricFamily(
        "bastion_active_connections", "Open client connections.", value=snap["active_connections"]
    )
    reloads = CounterMetricFamily(
        "bastion_config_reloads", "Config reloads, by result.", labels=["result"]
    )
    for result, n in snap["reloads"].items():
        reloads.add_metric([result], n)
    yield reloads
    auth = CounterMetricFamily(
        "bastion_auth_outcomes",
        "Authentication decisions, by plugin and outcome.",
        labels=["plugin", "outcome"],
    )
    for plugin, outcome, n in snap.get("auth", []):
        auth.add_metric([plugin, outcome], n)
    yield auth
    cache = CounterMetricFamily(
        "bastion_upstream_token_cache",
        "upstream-oauth token look-ups, by result (hit or miss).",
        labels=["result"],
    )
    for kind, n in snap.get("token_cache", {}).items():
        cache.add_metric([kind], n)
    yield cache
    idp = CounterMetricFamily(
        "bastion_idp_requests", "Token requests to IdPs, by outcome.", labels=["outcome"]
    )
    for outcome, n in snap.get("idp_requests", {}).items():
        idp.add_metric([outcome], n)
    yield idp
    row = snap.get("idp_latency") or [0.0] * (len(BUCKETS) + 2)
    idp_latency = HistogramMetricFamily(
        "bastion_idp_request_duration_seconds", "Time of token requests to IdPs."
    )
    idp_latency.add_metric([], _buckets(row), sum_value=row[-1])
    yield idp_latency
    yield GaugeMetricFamily(
        "bastion_store_down",
        "Workers whose last store check failed (0 when the store is up or unused).",
        value=snap.get("store_down", 0),
    )


def _buckets(row: list[float]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs of a row of per-bucket counts (+Inf, then the sum)."""
    cumulative, buckets = 0.0, []
    for bound, count in zip([*map(str, BUCKETS), "+Inf"], row[:-1], strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return buckets
