"""The plugin pipeline end to end, through the built-in `headers` plugin and Higress rule syntax."""

from __future__ import annotations

import http.client
import json

from tests.e2e.conftest import GatewayFactory


def get(
    port: int, path: str, host: str = "test.com", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, str]]:
    """(status, response headers, headers the upstream received), all names lower-case."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        upstream = (
            {k.lower(): v for k, v in json.loads(body)["headers"]} if response.status == 200 else {}
        )
        return response.status, {k.lower(): v for k, v in response.getheaders()}, upstream
    finally:
        conn.close()


def routes(upstream: str = "backend") -> list[dict[str, object]]:
    return [
        {"name": "route-a", "path": "/echo/a", "service": upstream},
        {
            "name": "route-b",
            "path": "/echo/b",
            "service": upstream,
            "plugins": {"headers": {"request": {"set": {"X-Layer": "route-map"}}}},
        },
        {"name": "rest", "path": "/", "service": upstream},
    ]


def test_instance_route_and_domain_rules_apply_by_specificity(
    start_gateway: GatewayFactory,
) -> None:
    plugins = {
        "headers": {
            "request": {"set": {"X-Layer": "instance"}, "remove": ["X-Drop-Me"]},
            "response": {"set": {"X-Served-By": "bastion"}},
            "_rules_": [
                {
                    "_match_domain_": ["*.example.com"],
                    "request": {"set": {"X-Layer": "wildcard-domain"}},
                },
                {
                    "_match_domain_": ["api.example.com"],
                    "request": {"set": {"X-Layer": "exact-domain"}},
                },
                {"_match_route_": ["route-a"], "request": {"set": {"X-Layer": "route-rule"}}},
            ],
        }
    }
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        status, response, upstream = get(
            gw.port, "/echo/other", headers={"X-Drop-Me": "1", "X-Layer": "client"}
        )
        assert status == 200
        assert upstream["x-layer"] == "instance"  # replaces what the client sent
        assert "x-drop-me" not in upstream
        assert response["x-served-by"] == "bastion"
        assert (
            get(gw.port, "/echo/other", host="x.y.example.com")[2]["x-layer"] == "wildcard-domain"
        )
        assert (
            get(gw.port, "/echo/other", host="API.example.com:8080")[2]["x-layer"] == "exact-domain"
        )
        # a route rule beats every domain rule
        assert get(gw.port, "/echo/a", host="api.example.com")[2]["x-layer"] == "route-rule"
        # the route's own plugins map is a route rule; it replaces the instance config
        status, response, upstream = get(
            gw.port, "/echo/b", host="api.example.com", headers={"X-Drop-Me": "1"}
        )
        assert upstream["x-layer"] == "route-map"
        assert upstream["x-drop-me"] == "1"
        assert "x-served-by" not in response


def test_rules_only_apply_where_they_match_when_the_instance_sets_nothing(
    start_gateway: GatewayFactory,
) -> None:
    plugins = {
        "headers": {
            "_rules_": [{"_match_route_": ["route-a"], "request": {"set": {"X-Only": "a"}}}]
        }
    }
    with start_gateway(routes=routes(), plugins=plugins) as gw:
        assert get(gw.port, "/echo/a")[2]["x-only"] == "a"
        assert "x-only" not in get(gw.port, "/echo/other")[2]


def test_identity_headers_are_stripped_on_every_route_even_without_plugins(
    start_gateway: GatewayFactory,
) -> None:
    with start_gateway() as gw:
        _, _, upstream = get(
            gw.port,
            "/echo/id",
            headers={
                "X-Mse-Consumer": "admin",
                "X_Auth_Request_User": "root",
                "Eg-Consumer-Id": "1",
            },
        )
        assert not {
            "x-mse-consumer",
            "x_auth_request_user",
            "x-auth-request-user",
            "eg-consumer-id",
        } & set(upstream)
