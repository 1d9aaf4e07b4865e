"""The proxy through `bastion run` with `http.client`: routing and its precedence, path
normalization, the headers sent upstream, the error statuses, WebSocket, and bounded memory on
200 MB transfers.

Routing is observed through the echo upstream: each routing-table route has a service of its own,
a distinct port of one extra `upstream_app.py` process, and `/echo` answers with the port the
request reached. No test asserts a duration: every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

import psutil
import pytest
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from tests.e2e.conftest import UPSTREAM_APP, GatewayFactory
from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway, run_python
from tests.e2e.upstream_app import PATTERN

TABLE_ROUTES = ["exact-host", "wild", "wild-deep", "prefix", "prefix-long", "regex", "exact-path"]
LIMITS = {"max_request_body": 100_000, "max_header_size": 8192, "max_header_count": 30}


def request(
    port: int,
    path: str = "/echo/x",
    method: str = "GET",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: Any = None,
    timeout: float = 10,
) -> tuple[int, Message, bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {name.lower() for name, _ in items}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        if body is not None and "content-length" not in names:
            items.append(("Content-Length", str(len(body))))
        for name, value in items:
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def echo(port: int, path: str = "/echo/x", **kwargs: Any) -> dict[str, Any]:
    status, _, body = request(port, path, **kwargs)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def upstream_headers(result: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in result["headers"] if k.lower() == name]


def assert_error(status: int, body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert json.loads(body)["error"] == code


def assert_serving(gw: Gateway) -> None:
    assert echo(gw.port, "/echo/still-serving")["path"] == "/echo/still-serving"


def route(name: str, service: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "service": service or name, **fields}


@pytest.fixture(scope="module")
def table_ports() -> Iterator[dict[str, int]]:
    """One extra echo upstream process listening on one port per routing-table route."""
    ports = {name: free_port() for name in TABLE_ROUTES}
    args = [arg for port in ports.values() for arg in ("--port", str(port))]
    with run_python(UPSTREAM_APP, *args, port=list(ports.values())[-1]):
        yield ports


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream_port: int, table_ports: dict[str, int]
) -> Iterator[Gateway]:
    backend = f"http://127.0.0.1:{upstream_port}"
    services = [
        {"name": "backend", "url": backend},
        {"name": "slow", "url": backend, "timeout": 1},
        {"name": "dead", "url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 1},
        *({"name": name, "url": f"http://127.0.0.1:{port}"} for name, port in table_ports.items()),
    ]
    routes = [
        route("exact-host", domains=["api.test.com"]),
        route("wild", domains=["*.test.com"]),
        route("wild-deep", domains=["*.b.test.com"]),
        route("keep-host", "backend", domains=["keep.test"], preserve_host=True),
        route("small", "backend", domains=["small.test"], limits={"max_request_body": 1000}),
        # file order is the reverse of precedence: the shorter prefix and the regex come first
        route("prefix", path="/echo/p"),
        route("prefix-long", path="/echo/p/longer"),
        route("regex", path="/echo/p/(re[0-9]+|exact[0-9]*)", path_type="regex"),
        route("exact-path", path="/echo/p/exact", path_type="exact"),
        route("admin", "dead", path="/admin"),
        route("slow", path="/slow"),
        route("all", "backend"),
    ]
    config = gateway_config(
        upstream_port, free_port(), services=services, routes=routes, limits=LIMITS
    )
    with run_gateway(tmp_path_factory.mktemp("gw"), config) as gateway:
        yield gateway


# --- routing -----------------------------------------------------------------------------------


def test_no_route_is_404_and_domains_are_honoured(start_gateway: GatewayFactory) -> None:
    routes = [{"name": "only", "domains": ["only.test"], "path": "/echo", "service": "backend"}]
    with start_gateway(routes=routes) as gw:
        for host, path in [
            ("other.test", "/echo/x"),
            ("only.test", "/other"),
            ("x.only.test", "/echo"),
        ]:
            status, _, body = request(gw.port, path, headers={"Host": host})
            assert_error(status, body, 404, "no_route")
        assert echo(gw.port, "/echo/x", headers={"Host": "ONLY.test:8080"})["path"] == "/echo/x"


ROUTING_TABLE = [
    ("api.test.com", "/echo/h", "exact-host"),
    ("API.Test.Com:8080", "/echo/h", "exact-host"),
    ("x.test.com", "/echo/h", "wild"),
    ("deep.x.y.test.com", "/echo/h", "wild"),
    ("b.test.com", "/echo/h", "wild"),  # the apex of *.b.test.com
    ("a.b.test.com", "/echo/h", "wild-deep"),  # the longer wildcard
    ("x.test.com", "/echo/p/exact", "wild"),  # a host group beats routes without domains
    ("test.com", "/echo/h", "all"),  # a wildcard never matches its apex
    ("other.org", "/echo/h", "all"),
    ("gw.test", "/echo/p/x", "prefix"),
    ("gw.test", "/echo/pq", "prefix"),  # a plain string prefix
    ("gw.test", "/echo/p/longer/x", "prefix-long"),
    ("gw.test", "/echo/p/exact", "exact-path"),
    ("gw.test", "/echo/p/exact2", "regex"),
    ("gw.test", "/echo/p/re12", "regex"),
    ("gw.test", "/echo/p/re12/more", "prefix"),  # a regex must match the whole path
]


@pytest.mark.parametrize(("host", "path", "route"), ROUTING_TABLE)
def test_most_specific_route_wins(
    gw: Gateway, upstream_port: int, table_ports: dict[str, int], host: str, path: str, route: str
) -> None:
    expected_port = upstream_port if route == "all" else table_ports[route]
    result = echo(gw.port, path, headers={"Host": host})
    assert (result["port"], result["path"]) == (expected_port, path)


# --- path normalization ------------------------------------------------------------------------


NORMALIZED = ["//echo/x", "/a/../echo/x", "/%2e%2e/echo/x", "/%65cho/x", "/echo/./x", "/echo//x"]


@pytest.mark.parametrize("path", [*NORMALIZED, "/./echo/x", "/echo/y/../x", "/%2E%2E/%2e/echo/x"])
def test_path_is_normalized_before_forwarding(gw: Gateway, path: str) -> None:
    assert echo(gw.port, path)["path"] == "/echo/x"


@pytest.mark.parametrize(
    "path", ["/admin", "//admin", "/%61dmin", "/x/../admin", "/%2e%2e/admin", "/./admin/x"]
)
def test_route_cannot_be_bypassed_by_spelling(gw: Gateway, path: str) -> None:
    status, _, body = request(gw.port, path)
    assert_error(status, body, 502, "upstream_unavailable")


def test_query_string_is_forwarded_unchanged(gw: Gateway) -> None:
    query = "a=%2F&b=1+2&c=&a=3&e=%7e&f=/../x"
    result = echo(gw.port, f"/echo/q?{query}")
    assert (result["path"], result["query"]) == ("/echo/q", query)


@pytest.mark.parametrize("path", ["/%zz", "/echo/%2", "/echo/%g0x"])
def test_invalid_percent_encoding_is_400(gw: Gateway, path: str) -> None:
    status, _, body = request(gw.port, path)
    assert status == 400, body
    assert_serving(gw)


# --- headers sent upstream ---------------------------------------------------------------------


def test_forwarded_headers(gw: Gateway) -> None:
    spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    result = echo(
        gw.port, headers={"Host": "client.example", "X-Forwarded-For": "1.2.3.4", **spoofed}
    )
    assert upstream_headers(result, "x-forwarded-for") == ["1.2.3.4, 127.0.0.1"]
    assert upstream_headers(result, "x-forwarded-proto") == ["http"]
    assert upstream_headers(result, "x-forwarded-host") == ["client.example"]


def test_forwarded_for_without_incoming_value(gw: Gateway) -> None:
    assert upstream_headers(echo(gw.port), "x-forwarded-for") == ["127.0.0.1"]


def test_host_is_the_service_unless_preserve_host(gw: Gateway, upstream_port: int) -> None:
    result = echo(gw.port, headers={"Host": "client.example"})
    assert upstream_headers(result, "host") == [f"127.0.0.1:{upstream_port}"]
    result = echo(gw.port, headers={"Host": "keep.test"})
    assert upstream_headers(result, "host") == ["keep.test"]


def test_request_id_is_added_and_returned(gw: Gateway) -> None:
    status, headers, body = request(gw.port, "/echo/rid")
    assert status == 200
    rid = headers["X-Request-Id"]
    assert rid is not None and re.fullmatch(r"[0-9a-fA-F]{32}", rid)
    assert upstream_headers(json.loads(body), "x-request-id") == [rid]


def test_valid_incoming_request_id_is_kept(gw: Gateway) -> None:
    rid = "client-Id_1.2:3" + "x" * 100
    status, headers, body = request(gw.port, "/echo/rid", headers={"X-Request-Id": rid})
    assert status == 200
    assert headers["X-Request-Id"] == rid
    assert upstream_headers(json.loads(body), "x-request-id") == [rid]


@pytest.mark.parametrize("rid", ["bad id", "semi;colon", "x" * 129, "<script>"])
def test_invalid_incoming_request_id_is_replaced(gw: Gateway, rid: str) -> None:
    status, headers, body = request(gw.port, "/echo/rid", headers={"X-Request-Id": rid})
    assert status == 200
    new = headers["X-Request-Id"]
    assert new != rid and re.fullmatch(r"[0-9a-fA-F]{32}", new or "")
    assert upstream_headers(json.loads(body), "x-request-id") == [new]


IDENTITY = [
    *((name, "mallory") for name in ("X-Mse-Consumer", "X_Mse_Consumer", "x-mse-consumer")),
    *((name, "mallory") for name in ("X-Auth-Request-User", "X_Auth_Request_Groups")),
    *((name, "42") for name in ("eg-consumer-id", "Eg_Consumer_Name")),
]


def test_identity_headers_are_stripped(gw: Gateway) -> None:
    result = echo(gw.port, headers=[*IDENTITY, ("X-Normal", "kept"), ("X-Mse-Other", "kept")])
    names = [name.lower().replace("_", "-") for name, _ in result["headers"]]
    leaked = [
        n
        for n in names
        if n == "x-mse-consumer" or n.startswith(("x-auth-request-", "eg-consumer-"))
    ]
    assert leaked == []
    assert upstream_headers(result, "x-normal") == ["kept"]
    assert upstream_headers(result, "x-mse-other") == ["kept"]


# --- errors: each with a JSON body, and the gateway keeps serving ------------------------------


def test_upstream_refused_is_502(gw: Gateway) -> None:
    status, _, body = request(gw.port, "/admin/x")
    assert_error(status, body, 502, "upstream_unavailable")
    assert_serving(gw)


def test_upstream_timeout_is_504(gw: Gateway) -> None:
    status, _, body = request(gw.port, "/slow?seconds=0")
    assert (status, body) == (200, b"slow done")
    status, _, body = request(gw.port, "/slow?seconds=5")
    assert_error(status, body, 504, "upstream_timeout")
    assert_serving(gw)


def test_body_limits(gw: Gateway) -> None:
    assert echo(gw.port, "/echo/b", method="POST", body=b"a" * 50_000)["body_len"] == 50_000
    status, _, body = request(
        gw.port, "/echo/b", method="POST", body=b"a" * 1500, headers={"Host": "small.test"}
    )
    assert_error(status, body, 413, "request_too_large")
    assert_serving(gw)
    result = echo(
        gw.port, "/echo/b", method="POST", body=b"a" * 900, headers={"Host": "small.test"}
    )
    assert result["body_len"] == 900


def test_header_size_limit_is_431(gw: Gateway) -> None:
    assert echo(gw.port, headers={"X-Big": "a" * 4000})["path"] == "/echo/x"
    status, _, body = request(gw.port, headers={"X-Big": "a" * 9000})
    assert_error(status, body, 431, "headers_too_large")
    assert_serving(gw)


def test_header_count_limit_is_431(gw: Gateway) -> None:
    assert echo(gw.port, headers=[(f"X-H{i}", "v") for i in range(20)])["path"] == "/echo/x"
    status, _, body = request(gw.port, headers=[(f"X-H{i}", "v") for i in range(40)])
    assert_error(status, body, 431, "headers_too_large")
    assert_serving(gw)


# --- WebSocket ---------------------------------------------------------------------------------


def test_websocket_echo_through_the_gateway(gw: Gateway) -> None:
    url = f"ws://127.0.0.1:{gw.port}/ws"
    with ws_connect(
        url, subprotocols=[Subprotocol("chat.v1")], open_timeout=5, close_timeout=5
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        ws.send("hello text")
        assert ws.recv(timeout=5) == "hello text"
        payload = bytes(range(256)) * 300
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
        ws.close()
        assert ws.close_code == 1000
    assert_serving(gw)


# --- bounded memory ----------------------------------------------------------------------------

BIG = 200 * 1024 * 1024
MIB = 1024 * 1024


class RssSampler:
    """Peak RSS of a process and its children, sampled in a thread while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def pattern_stream(total: int) -> Iterator[bytes]:
    piece = PATTERN * 16  # 1 MiB
    for _ in range(total // len(piece)):
        yield piece


def upload(port: int, total: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST", "/upload", body=pattern_stream(total), headers={"Content-Length": str(total)}
        )
        resp = conn.getresponse()
        assert resp.status == 200
        result: dict[str, Any] = json.loads(resp.read())
        return result
    finally:
        conn.close()


def download(port: int, total: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", f"/big?bytes={total}")
        resp = conn.getresponse()
        assert resp.status == 200
        digest = hashlib.sha256()
        while chunk := resp.read(MIB):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        conn.close()


@pytest.mark.slow
def test_200mb_up_and_down_with_bounded_memory(start_gateway: GatewayFactory) -> None:
    expected = hashlib.sha256()
    for piece in pattern_stream(BIG):
        expected.update(piece)
    with start_gateway(limits={"max_request_body": 2 * BIG}) as gw:
        upload(gw.port, 4 * MIB)  # warm up: pools, buffers, code paths
        download(gw.port, 4 * MIB)
        with RssSampler(gw.proc.pid) as sampler:
            baseline = sampler.rss()
            result = upload(gw.port, BIG)
            digest = download(gw.port, BIG)
    assert result == {"bytes": BIG, "sha256": expected.hexdigest()}
    assert digest == expected.hexdigest()
    growth = sampler.peak - baseline
    assert growth <= 50 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
