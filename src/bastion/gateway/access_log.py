"""The end of every exchange: its metrics, and its access-log line when the config asks for one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.gateway.clock import perf_counter, wall
from bastion.ops.logging import LOG, redact_query

if TYPE_CHECKING:
    from bastion.gateway.exchange import Exchange
    from bastion.ops.metrics import Metrics


def log_exchange(metrics: Metrics, access_log: bool, ex: Exchange) -> None:
    status = ex.status or 499  # 499: the client went away before an answer (nginx's code)
    duration = perf_counter() - ex.start if ex.start else 0.0
    metrics.observe(ex.route_name, status, duration)
    if not access_log:
        return
    target = ex.target.decode("latin-1")
    mark = target.find("?")
    if mark >= 0:
        query = target[mark + 1 :]
        redacted = redact_query(query)
        if redacted is not query:  # as a rule nothing is redacted: no new target then
            target = target[: mark + 1] + redacted
    LOG.write_record(
        {
            # three decimals: int(x + 0.5) is a C cast once compiled, round() a call by name, and
            # round(x, 3) formats the float through dtoa
            "ts": int(wall() * 1000 + 0.5) / 1000,
            "type": "access",
            "request_id": ex.request_id,
            "remote": ex.conn.client_ip,
            "method": ex.method,
            "host": ex.lookup.get(b"host", b"").decode("latin-1"),
            "uri": target,
            "route": ex.route_name,
            "status": status,
            "bytes_in": ex.body_bytes,
            "bytes_out": ex.bytes_out,
            "duration_ms": int(duration * 1_000_000 + 0.5) / 1000,
        }
    )
