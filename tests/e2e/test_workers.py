"""`bastion run --workers N`: worker processes share the port, metrics sum over them, clean stop."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import psutil

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import Gateway
from tests.e2e.test_ops import admin, eventually, fetch, metric, scrape


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


def test_sigterm_stops_master_and_workers(start_gateway: GatewayFactory) -> None:
    with start_gateway("--workers", "2") as gw:
        workers = eventually(lambda: two_workers(gw), timeout=20)
        assert fetch(gw.url, "/echo/x").status == 200
        os.kill(gw.proc.pid, signal.SIGTERM)
        assert gw.proc.wait(20) == 0

        def all_gone() -> None:
            for worker in workers:
                try:
                    assert worker.status() == psutil.STATUS_ZOMBIE, worker
                except psutil.NoSuchProcess:
                    continue

        eventually(all_gone)
