"""`bastion run --workers N`: worker processes share the port, metrics sum over them, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import Gateway
from tests.e2e.test_ops import (
    ECHO_ONLY,
    admin,
    eventually,
    fetch,
    metric,
    scrape,
    wait_upstream_connection,
)
from tests.e2e.test_reload import current, post_reload, sighup, with_status_route


def listening_workers(gw: Gateway) -> list[psutil.Process]:
    """The master's descendants that listen on the gateway's port."""
    workers = []
    for child in psutil.Process(gw.proc.pid).children(recursive=True):
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == gw.port for c in conns):
            workers.append(child)
    return workers


def serving(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def two_workers(gw: Gateway) -> list[psutil.Process]:
    workers = listening_workers(gw)
    assert len(workers) == 2, workers
    return workers


def test_two_workers_share_the_port(start_gateway: GatewayFactory) -> None:
    with start_gateway("--workers", "2", admin=admin()) as gw:
        workers = eventually(lambda: two_workers(gw), timeout=20)
        assert gw.proc.pid not in {w.pid for w in workers}
        # many new connections, a few at a time: every one is served
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: fetch(gw.url, f"/echo/w{i}"), range(100)))
        assert [r.status for r in replies] == [200] * 100
        assert {r.json()["path"] for r in replies} == {f"/echo/w{i}" for i in range(100)}


def test_metrics_sum_over_workers(start_gateway: GatewayFactory) -> None:
    with start_gateway("--workers", "2", admin=admin()) as gw:
        eventually(lambda: two_workers(gw), timeout=20)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda i: fetch(gw.url, f"/echo/m{i}").status, range(50)))
        assert statuses == [200] * 50

        def counted() -> None:
            total = metric(scrape(gw), "bastion_requests_total", route="all", status="200")
            assert (total or 0) >= 50, total

        eventually(counted, timeout=10)


def every_worker_has_the_status_route(gw: Gateway) -> None:
    # new connections land on either worker: 20 in a row must all see the new route
    statuses = [fetch(gw.url, "/status/201").status for _ in range(20)]
    assert statuses == [201] * 20, statuses


@pytest.mark.parametrize("trigger", ["sighup", "admin"])
def test_reload_reaches_every_worker(start_gateway: GatewayFactory, trigger: str) -> None:
    with start_gateway("--workers", "2", routes=ECHO_ONLY, admin=admin()) as gw:
        eventually(lambda: two_workers(gw), timeout=20)
        assert fetch(gw.url, "/status/201").status == 404
        gw.write_config(with_status_route(current(gw)))
        if trigger == "sighup":
            sighup(gw)
        else:
            post_reload(gw)
        eventually(lambda: every_worker_has_the_status_route(gw))

        def counted() -> None:
            ok = metric(scrape(gw), "bastion_config_reloads_total", result="ok") or 0
            assert ok >= 1, ok

        eventually(counted)


def test_sigterm_stops_master_and_workers(
    start_gateway: GatewayFactory, upstream_port: int
) -> None:
    with start_gateway("--workers", "2") as gw, ThreadPoolExecutor(1) as pool:
        workers = eventually(lambda: two_workers(gw), timeout=20)
        assert fetch(gw.url, "/echo/x").status == 200
        slow = pool.submit(fetch, gw.url, "/slow?seconds=2")
        wait_upstream_connection(gw.proc.pid, upstream_port)
        os.kill(gw.proc.pid, signal.SIGTERM)
        reply = slow.result(timeout=20)
        assert (reply.status, reply.body) == (200, b"slow done")
        assert gw.proc.wait(20) == 0

        def all_gone() -> None:
            assert not [w.pid for w in workers if serving(w)]

        eventually(all_gone)


@pytest.mark.parametrize("file_state", ["valid", "invalid-on-disk"])
def test_a_dead_worker_is_replaced(start_gateway: GatewayFactory, file_state: str) -> None:
    with start_gateway("--workers", "2") as gw:
        first = eventually(lambda: two_workers(gw), timeout=20)
        if file_state == "invalid-on-disk":
            # edited but never reloaded: a replacement worker must still serve the running config
            config = current(gw)
            config["routes"] = [{**config["routes"][0], "service": "bakend"}]
            gw.write_config(config)
        first[0].send_signal(signal.SIGKILL)

        def replaced() -> None:
            pids = {w.pid for w in two_workers(gw)}
            assert first[0].pid not in pids, pids

        eventually(replaced, timeout=20)
        statuses = [fetch(gw.url, f"/echo/r{i}").status for i in range(20)]
        assert statuses == [200] * 20


def test_workers_exit_when_the_master_is_killed(start_gateway: GatewayFactory) -> None:
    # orphans would keep serving an old config on the shared port beside a restarted gateway
    with start_gateway("--workers", "2") as gw:
        workers = eventually(lambda: two_workers(gw), timeout=20)
        try:
            gw.proc.kill()
            gw.proc.wait(10)

            def all_gone() -> None:
                alive = [w.pid for w in workers if serving(w)]
                assert not alive, f"workers {alive} outlived their master"

            eventually(all_gone, timeout=15)
        finally:
            for worker in workers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    worker.kill()
