"""Upstream keep-alive pooling: a stale pooled connection is retried once (idempotent only)."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.e2e.procs import free_port, gateway_config, run_gateway, run_python

FLAKY = Path(__file__).with_name("flaky_upstream.py")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_stale_pooled_connection_is_retried_once_for_get(tmp_path: Path) -> None:
    upstream = free_port()
    with run_python(FLAKY, "--port", str(upstream), port=upstream):
        config = gateway_config(upstream, free_port())
        with run_gateway(tmp_path, config) as gw:
            # each client request uses a new client connection, but the gateway reuses its pooled
            # upstream connection, which the upstream drops on its second request
            for _ in range(4):
                assert request(gw.port, "GET", "/x") == (200, b"served")


def test_stale_pooled_connection_is_not_retried_for_post(tmp_path: Path) -> None:
    upstream = free_port()
    with run_python(FLAKY, "--port", str(upstream), port=upstream):
        config = gateway_config(upstream, free_port())
        with run_gateway(tmp_path, config) as gw:
            assert request(gw.port, "GET", "/warm") == (200, b"served")
            status, body = request(gw.port, "POST", "/x", body=b"payload")
            assert status == 502
            assert b"upstream_unavailable" in body
            assert request(gw.port, "GET", "/after") == (200, b"served")
