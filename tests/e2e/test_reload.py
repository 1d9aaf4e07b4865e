"""Reload of a running gateway: SIGHUP, POST /reload and `watch: true`, valid and invalid files."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import Gateway, free_port
from tests.e2e.test_ops import (
    AUTH,
    ECHO_ONLY,
    admin,
    eventually,
    fetch,
    json_lines,
    metric,
    scrape,
    wait_upstream_connection,
)

BAD_SERVICE = "routes[0].service: unknown service 'bakend' (did you mean 'backend'?)"


def current(gw: Gateway) -> dict[str, Any]:
    config = yaml.safe_load(gw.config_path.read_text())
    assert isinstance(config, dict)
    return config


def with_status_route(config: dict[str, Any]) -> dict[str, Any]:
    status = {"name": "status", "path": "/status", "service": "backend"}
    return {**config, "routes": [*config["routes"], status]}


def invalid(gw: Gateway) -> dict[str, Any]:
    config = current(gw)
    config["routes"] = [{**config["routes"][0], "service": "bakend"}]
    return config


def sighup(gw: Gateway) -> None:
    os.kill(gw.proc.pid, signal.SIGHUP)


def post_reload(gw: Gateway) -> None:
    reply = fetch(gw.admin_url, "/reload", method="POST", headers=AUTH)
    assert reply.status == 200, reply.body
    assert reply.json() == {"status": "reloaded"}


def touch_only(gw: Gateway) -> None:
    """`watch: true`: writing the file is the trigger."""


TRIGGERS: dict[str, Callable[[Gateway], None]] = {
    "sighup": sighup,
    "admin": post_reload,
    "watch": touch_only,
}


def start(start_gateway: GatewayFactory, trigger: str) -> Any:
    overrides: dict[str, Any] = {"routes": ECHO_ONLY, "admin": admin()}
    if trigger == "watch":
        overrides["watch"] = True
    return start_gateway(**overrides)


def status_route_works(gw: Gateway) -> None:
    assert fetch(gw.url, "/status/201").status == 201


def logged_error(gw: Gateway, path: str) -> None:
    lines = [line for line in json_lines(gw) if line.get("level") == "error" and path in str(line)]
    assert lines, f"no error log line naming {path}"


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_reload_valid_file_takes_effect(start_gateway: GatewayFactory, trigger: str) -> None:
    with start(start_gateway, trigger) as gw:
        assert fetch(gw.url, "/status/201").json() == {"error": "no_route"}
        gw.write_config(with_status_route(current(gw)))
        TRIGGERS[trigger](gw)
        eventually(lambda: status_route_works(gw))
        assert fetch(gw.url, "/echo/still").status == 200

        def counted() -> None:
            assert (metric(scrape(gw), "bastion_config_reloads_total", result="ok") or 0) >= 1

        eventually(counted)


@pytest.mark.parametrize("trigger", ["sighup", "watch"])
def test_reload_invalid_file_is_refused(start_gateway: GatewayFactory, trigger: str) -> None:
    with start(start_gateway, trigger) as gw:
        assert fetch(gw.url, "/echo/before").status == 200
        original = current(gw)
        gw.write_config(invalid(gw))
        TRIGGERS[trigger](gw)
        eventually(lambda: logged_error(gw, "routes[0].service"))
        # the old config keeps serving
        assert fetch(gw.url, "/echo/old").status == 200
        assert fetch(gw.url, "/status/201").json() == {"error": "no_route"}
        assert gw.proc.poll() is None

        def counted() -> None:
            assert (metric(scrape(gw), "bastion_config_reloads_total", result="error") or 0) >= 1

        eventually(counted)
        # and a fixed file is taken afterwards
        gw.write_config(with_status_route(original))
        TRIGGERS[trigger](gw)
        eventually(lambda: status_route_works(gw))


def test_admin_reload_invalid_file_answers_400(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY, admin=admin()) as gw:
        gw.write_config(invalid(gw))
        reply = fetch(gw.admin_url, "/reload", method="POST", headers=AUTH)
        assert reply.status == 400, reply.body
        body = reply.json()
        assert body["error"] == "invalid_config"
        assert BAD_SERVICE in body["problems"]
        assert fetch(gw.url, "/echo/old").status == 200
        eventually(lambda: logged_error(gw, "routes[0].service"))


def test_admin_reload_unreadable_file_answers_400(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY, admin=admin()) as gw:
        gw.config_path.write_text("routes: [unclosed\n")
        reply = fetch(gw.admin_url, "/reload", method="POST", headers=AUTH)
        assert reply.status == 400, reply.body
        assert reply.json()["error"] == "invalid_config"
        assert len(reply.json()["problems"]) >= 1
        assert fetch(gw.url, "/echo/old").status == 200


def test_reload_points_a_route_elsewhere(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY) as gw:
        assert fetch(gw.url, "/echo/a").status == 200
        config = current(gw)
        config["services"] = [{"name": "backend", "url": f"http://127.0.0.1:{free_port()}"}]
        gw.write_config(config)
        sighup(gw)
        eventually(lambda: _status_is(gw, "/echo/a", 502))


def test_request_in_flight_finishes_on_its_config(
    start_gateway: GatewayFactory, upstream_port: int
) -> None:
    with start_gateway() as gw, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(fetch, gw.url, "/slow?seconds=2")
        wait_upstream_connection(gw.proc.pid, upstream_port)
        config = current(gw)
        config["services"] = [{"name": "backend", "url": f"http://127.0.0.1:{free_port()}"}]
        gw.write_config(config)
        sighup(gw)
        eventually(lambda: _status_is(gw, "/echo/new", 502))
        reply = slow.result(timeout=15)
        assert reply.status == 200
        assert reply.body == b"slow done"
        assert gw.proc.poll() is None


def _status_is(gw: Gateway, path: str, status: int) -> None:
    assert fetch(gw.url, path).status == status


def test_watch_survives_a_removed_file(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ECHO_ONLY, watch=True) as gw:
        original = current(gw)
        gw.config_path.unlink()
        # nothing to read: the old config keeps serving (poll a while to let the watcher see it)
        for _ in range(20):
            assert fetch(gw.url, "/echo/old").status == 200
        assert gw.proc.poll() is None
        gw.write_config(with_status_route(original))
        eventually(lambda: status_route_works(gw))


def test_watch_sees_a_change_made_right_after_start(start_gateway: GatewayFactory) -> None:
    # written as soon as the ports accept, before any request: the watcher must not miss it
    with start_gateway(routes=ECHO_ONLY, admin=admin(), watch=True) as gw:
        gw.write_config(with_status_route(current(gw)))
        eventually(lambda: status_route_works(gw))
