"""Operations of a running gateway: health, admin API and token, metrics, access log, drain.

The small HTTP, polling, metrics and log helpers at the top are shared with test_reload.py and
test_workers.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import ADMIN_TOKEN, Gateway, free_port, gateway_config, stop

T = TypeVar("T")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    base_url: str,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 15,
) -> Reply:
    """One request on a new connection (closed afterwards)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def eventually(check: Callable[[], T], timeout: float = 10, interval: float = 0.1) -> T:
    """Call `check` until it returns without an AssertionError (or OSError); re-raise at the end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def metric(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples called `name` whose labels include `labels`; None when there is none."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


def scrape(gw: Gateway) -> str:
    reply = fetch(gw.admin_url, "/metrics", headers=AUTH)
    assert reply.status == 200, reply.body
    return reply.body.decode()


def json_lines(gw: Gateway) -> list[dict[str, Any]]:
    """The gateway's output lines that are JSON objects."""
    out = []
    for line in gw.log_lines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def wait_upstream_connection(pid: int, upstream_port: int) -> None:
    """Wait until the gateway (or one of its children) holds a connection to the upstream."""

    def check() -> None:
        for proc in process_tree(pid):
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == upstream_port:
                    return
        raise AssertionError("the gateway holds no connection to the upstream")

    eventually(check)


def connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def admin(port: int | None = None) -> dict[str, str]:
    return {"listen": f"127.0.0.1:{port or free_port()}", "token": ADMIN_TOKEN}


ECHO_ONLY = [{"name": "echo", "path": "/echo", "service": "backend"}]


# --- health on the main listener ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_answered_before_routing(start_gateway: GatewayFactory, path: str) -> None:
    # no route matches "/" or the health paths: the gateway answers them itself
    with start_gateway(routes=ECHO_ONLY) as gw:
        reply = fetch(gw.url, path)
        assert reply.status == 200, reply.body
        if path == "/healthz":
            assert reply.json() == {"status": "ok"}
        assert fetch(gw.url, "/").json() == {"error": "no_route"}


def test_health_path_prefix_moves_the_endpoints(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY, health={"path_prefix": "/_bastion/"}) as gw:
        reply = fetch(gw.url, "/_bastion/healthz")
        assert reply.status == 200
        assert reply.json() == {"status": "ok"}
        assert fetch(gw.url, "/_bastion/readyz").status == 200
        moved = fetch(gw.url, "/healthz")
        assert moved.status == 404
        assert moved.json() == {"error": "no_route"}


def test_health_off_routes_healthz_like_any_path(start_gateway: GatewayFactory) -> None:
    routes = [*ECHO_ONLY, {"name": "hz", "path": "/healthz", "service": "backend"}]
    with start_gateway(routes=routes, health={"path_prefix": None}) as gw:
        # routed to the upstream, which has no /healthz: its own 404, not the gateway's answer
        reply = fetch(gw.url, "/healthz")
        assert reply.status == 404
        assert reply.body == b"Not Found"  # Starlette's 404 in tests/e2e/upstream_app.py
        assert fetch(gw.url, "/readyz").json() == {"error": "no_route"}


# --- admin listener -------------------------------------------------------------------------


def test_admin_health_needs_no_token(start_gateway: GatewayFactory) -> None:
    with start_gateway(admin=admin()) as gw:
        reply = fetch(gw.admin_url, "/healthz")
        assert reply.status == 200
        assert reply.json() == {"status": "ok"}
        assert fetch(gw.admin_url, "/readyz").status == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/metrics"), ("GET", "/openapi.json"), ("POST", "/reload")]
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abc"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme"],
)
def test_admin_refuses_without_the_token(
    start_gateway: GatewayFactory, method: str, path: str, headers: dict[str, str]
) -> None:
    with start_gateway(admin=admin()) as gw:
        reply = fetch(gw.admin_url, path, method=method, headers=headers)
        assert reply.status == 401, reply.body
        assert isinstance(reply.json(), dict)


def test_admin_openapi_with_the_token(start_gateway: GatewayFactory) -> None:
    with start_gateway(admin=admin()) as gw:
        reply = fetch(gw.admin_url, "/openapi.json", headers=AUTH)
        assert reply.status == 200
        doc = reply.json()
        assert doc["openapi"].startswith("3.")
        assert "/reload" in doc["paths"]


def test_admin_api_not_on_main_listener(start_gateway: GatewayFactory) -> None:
    # the admin API is not served on the main listener
    with start_gateway(routes=ECHO_ONLY, admin=admin()) as gw:
        assert fetch(gw.url, "/metrics", headers=AUTH).json() == {"error": "no_route"}


# --- metrics --------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY, admin=admin()) as gw:
        for _ in range(5):
            assert fetch(gw.url, "/echo/m").status == 200
        assert fetch(gw.url, "/nowhere").status == 404

        def check() -> str:
            text = scrape(gw)
            assert (metric(text, "bastion_requests_total", route="echo", status="200") or 0) >= 5
            assert (metric(text, "bastion_requests_total", route="", status="404") or 0) >= 1
            return text

        text = eventually(check)
        name = "bastion_request_duration_seconds"
        assert (metric(text, f"{name}_count", route="echo") or 0) >= 5
        assert metric(text, f"{name}_sum", route="echo") is not None
        assert (metric(text, f"{name}_bucket", route="echo", le="+Inf") or 0) >= 5
        assert metric(text, "bastion_active_connections") is not None
        assert "# TYPE bastion_request_duration_seconds histogram" in text
        assert "# TYPE bastion_active_connections gauge" in text


def test_metrics_count_upstream_errors(start_gateway: GatewayFactory, upstream_port: int) -> None:
    dead = free_port()
    services = [
        {"name": "backend", "url": f"http://127.0.0.1:{upstream_port}", "timeout": 0.5},
        {"name": "dead", "url": f"http://127.0.0.1:{dead}"},
    ]
    routes = [
        {"name": "dead", "path": "/dead", "service": "dead"},
        {"name": "all", "path": "/", "service": "backend"},
    ]
    with start_gateway(services=services, routes=routes, admin=admin()) as gw:
        refused = fetch(gw.url, "/dead/x")
        assert refused.status == 502, refused.body
        timed_out = fetch(gw.url, "/slow?seconds=3")
        assert timed_out.status == 504, timed_out.body

        def check() -> None:
            text = scrape(gw)
            errors = "bastion_upstream_errors_total"
            assert (metric(text, errors, service="dead", kind="connect") or 0) >= 1
            assert (metric(text, errors, service="backend", kind="timeout") or 0) >= 1

        eventually(check)


def test_metrics_active_connections_gauge(start_gateway: GatewayFactory) -> None:
    with start_gateway(admin=admin()) as gw:
        held = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
        try:
            held.request("GET", "/echo/keepalive")
            assert held.getresponse().read()

            def open_now() -> None:
                assert (metric(scrape(gw), "bastion_active_connections") or 0) >= 1

            eventually(open_now)
        finally:
            held.close()

        def closed() -> None:
            assert metric(scrape(gw), "bastion_active_connections") == 0

        eventually(closed)


# --- access log -----------------------------------------------------------------------------

SECRET_PARAMS = [
    "client_secret",
    "password",
    "code",
    "refresh_token",
    "access_token",
    "id_token",
    "client_assertion",
]


def access_line(gw: Gateway, marker: str) -> dict[str, Any]:
    lines = [line for line in json_lines(gw) if marker in str(line.get("uri", ""))]
    assert lines, f"no access log line for {marker}"
    return lines[0]


def test_access_log_line_per_request(gateway: Gateway) -> None:
    request_id = str(uuid.uuid4())
    reply = fetch(gateway.url, "/echo/logged?x=1", headers={"X-Request-Id": request_id})
    assert reply.status == 200
    upstream_ids = [v for k, v in reply.json()["headers"] if k.lower() == "x-request-id"]
    assert upstream_ids == [request_id]
    line = eventually(lambda: access_line(gateway, "/echo/logged"))
    assert line["request_id"] == request_id
    assert line["route"] == "all"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["uri"] == "/echo/logged?x=1"
    assert line["bytes_out"] >= len(reply.body)
    assert isinstance(line["duration_ms"], int | float)
    assert line["duration_ms"] >= 0


def test_access_log_no_route(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY) as gw:
        assert fetch(gw.url, "/unrouted-marker", method="DELETE").status == 404
        line = eventually(lambda: access_line(gw, "/unrouted-marker"))
        assert line["status"] == 404
        assert line["method"] == "DELETE"
        assert line["route"] in ("", None)
        assert line["request_id"]


def test_access_log_generates_a_request_id(gateway: Gateway) -> None:
    reply = fetch(gateway.url, "/echo/generated")
    sent = [v for k, v in reply.json()["headers"] if k.lower() == "x-request-id"]
    assert len(sent) == 1 and sent[0]
    line = eventually(lambda: access_line(gateway, "/echo/generated"))
    assert line["request_id"] == sent[0]


def test_access_log_redacts_secrets(gateway: Gateway) -> None:
    secrets = {name: f"s3cr3t{name.replace('_', '')}value" for name in SECRET_PARAMS}
    query = "&".join(f"{name}={value}" for name, value in secrets.items())
    bearer = "Bearer topsecretauthorizationvalue42"
    reply = fetch(gateway.url, f"/echo/redact?{query}&x=1", headers={"Authorization": bearer})
    assert reply.status == 200
    # the upstream still receives the query unchanged
    assert reply.json()["query"] == f"{query}&x=1"
    line = eventually(lambda: access_line(gateway, "/echo/redact"))
    assert "x=1" in line["uri"]
    for name in SECRET_PARAMS:
        assert f"{name}=" in line["uri"]
    assert stop(gateway.proc) == 0
    log = gateway.log_path.read_text(errors="replace")
    for value in secrets.values():
        assert value not in log
    assert "topsecretauthorizationvalue42" not in log


@pytest.mark.parametrize(
    "query",
    [
        "client%5Fsecret=hiddenvalue1",  # the upstream decodes the name to client_secret
        "CLIENT_SECRET=hiddenvalue1",
        "x=1&password=hiddenvalue1&password=hiddenvalue2",
        "code=&code=hiddenvalue1",
    ],
    ids=["encoded-name", "upper-case", "repeated", "empty-first"],
)
def test_access_log_redacts_spelling_variants(gateway: Gateway, query: str) -> None:
    assert fetch(gateway.url, f"/echo/variant?{query}").status == 200
    eventually(lambda: access_line(gateway, "/echo/variant"))
    assert stop(gateway.proc) == 0
    log = gateway.log_path.read_text(errors="replace")
    assert "hiddenvalue" not in log


def test_secrets_not_logged_on_error_paths(start_gateway: GatewayFactory) -> None:
    services = [{"name": "dead", "url": f"http://127.0.0.1:{free_port()}"}]
    routes = [{"name": "dead", "path": "/", "service": "dead"}]
    with start_gateway(services=services, routes=routes, admin=admin()) as gw:
        reply = fetch(
            gw.url,
            "/x?client_secret=deadsecretvalue1",
            headers={"Authorization": "Bearer deadsecretvalue2"},
        )
        assert reply.status == 502
        # malformed framing (two Content-Lengths) → 400
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(
                b"POST /x?password=deadsecretvalue3 HTTP/1.1\r\nHost: a\r\n"
                b"Authorization: Bearer deadsecretvalue4\r\n"
                b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
        # the admin API with a wrong and the right token
        assert (
            fetch(
                gw.admin_url, "/metrics", headers={"Authorization": "Bearer deadsecretvalue5"}
            ).status
            == 401
        )
        assert fetch(gw.admin_url, "/metrics", headers=AUTH).status == 200
        eventually(lambda: access_line(gw, "/x?client_secret"))
        assert stop(gw.proc) == 0
        log = gw.log_path.read_text(errors="replace")
        assert "deadsecretvalue" not in log
        assert ADMIN_TOKEN not in log


def test_access_log_off(start_gateway: GatewayFactory) -> None:
    with start_gateway(access_log=False) as gw:
        assert fetch(gw.url, "/echo/unlogged-marker").status == 200
        assert stop(gw.proc) == 0
        assert "unlogged-marker" not in gw.log_path.read_text(errors="replace")


# --- graceful drain -------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests(
    start_gateway: GatewayFactory, upstream_port: int
) -> None:
    with start_gateway(admin=admin()) as gw, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(fetch, gw.url, "/slow?seconds=2")
        wait_upstream_connection(gw.proc.pid, upstream_port)
        os.kill(gw.proc.pid, signal.SIGTERM)

        def refused() -> None:
            assert connect_refused(gw.port)

        def draining() -> None:
            assert fetch(gw.admin_url, "/readyz").status == 503

        # while the slow request is still being served: no new connections, not ready
        eventually(refused, timeout=5, interval=0.02)
        eventually(draining, timeout=5, interval=0.02)
        assert not slow.done(), "the in-flight request ended before the checks above"
        reply = slow.result(timeout=15)
        assert (reply.status, reply.body) == (200, b"slow done")
        assert gw.proc.wait(15) == 0


def test_sigterm_does_not_wait_for_idle_keepalive_clients(start_gateway: GatewayFactory) -> None:
    # drain_timeout far above the wait below: an idle client must not hold the stop up
    with start_gateway(limits={"drain_timeout": 300}) as gw:
        idle = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
        try:
            idle.request("GET", "/echo/idle")
            assert idle.getresponse().read()
            os.kill(gw.proc.pid, signal.SIGTERM)
            assert gw.proc.wait(15) == 0
        finally:
            idle.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_exit_cleanly(gateway: Gateway, sig: int) -> None:
    assert fetch(gateway.url, "/echo/x").status == 200
    os.kill(gateway.proc.pid, sig)
    gateway.proc.wait(15)
    # Ctrl-C may also exit 130 as shells expect; SIGTERM is a clean stop
    assert gateway.proc.returncode in ((0, 130) if sig == signal.SIGINT else (0,))
    assert "Traceback" not in gateway.log_path.read_text(errors="replace")
    assert connect_refused(gateway.port)


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process and every descendant it left (by pid), even when it hangs."""
    with contextlib.suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(proc.pid).children(recursive=True)
        stop(proc)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("which", ["listen", "admin"])
def test_run_on_a_busy_port_fails_cleanly(
    tmp_path: Path, upstream_port: int, which: str, workers: str
) -> None:
    log_path = tmp_path / "bastion.log"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        config = gateway_config(upstream_port, taken if which == "listen" else free_port())
        config["admin"] = admin(taken if which == "admin" else None)
        path = tmp_path / "bastion.yaml"
        path.write_text(yaml.safe_dump(config))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "run", "-c", str(path), "--workers", workers],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_tree(proc)
    out = log_path.read_text(errors="replace")
    assert code is not None, f"still running after 30 s:\n{out[-2000:]}"
    assert code != 0, out
    assert "Traceback" not in out
    assert str(taken) in out
