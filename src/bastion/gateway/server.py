"""Listeners, the worker loop, signals, reload and graceful drain.

`bastion run --workers 1` is one process: the data path, the admin API and reload in one loop.
With `--workers N` each worker process runs this loop under a Supervisor (supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from bastion.config.fields import parse_host_port
from bastion.config.loader import load_config
from bastion.config.model import Config
from bastion.errors import ConfigError
from bastion.gateway import hot_path
from bastion.gateway.connection import ClientConnection
from bastion.gateway.pipeline import health_body
from bastion.gateway.runtime import Runtime, build_runtime
from bastion.ops.logging import LOG
from bastion.ops.memory import release_free_memory
from bastion.ops.metrics import Metrics

if TYPE_CHECKING:
    from bastion.gateway.responses import Response

_SWEEP_INTERVAL = 0.5  # seconds between timeout checks: timeouts are seconds-grained
_WATCH_INTERVAL = 1.0
_SNAPSHOT_INTERVAL = 1.0
_STORE_CHECK_INTERVAL = 1.0
_STORE_CHECK_TIMEOUT = 2.0


def listen_socket(address: str, reuse_port: bool) -> socket.socket:
    host, port = parse_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS context, or a ConfigError naming the file that cannot be used."""
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for field, path in (("tls.cert", config.tls.cert), ("tls.key", config.tls.key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError([(field, f"cannot read {path}: {exc.strerror}")]) from None
    try:
        context.load_cert_chain(config.tls.cert, config.tls.key)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError([("tls", f"cannot load the certificate and key: {exc}")]) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


class AdminListener:
    """The admin API in this process's loop, bound at once: a busy port fails the start."""

    def __init__(self, controller: Any, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        from bastion.admin.app import admin_server, create_app

        assert config.admin is not None
        sock = listen_socket(config.admin.listen, reuse_port=False)
        self.server = admin_server(create_app(controller, config.admin.token))
        self.task = loop.create_task(self.server.serve(sockets=[sock]))

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.task, 2.0)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs (timers, watchers) and close the loop without leaving tasks."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class Worker:
    """One serving process: listeners, the current Runtime, connections, metrics, timers."""

    # the compiled data path reads `runtime` per request: a slot is found on the type, where an
    # instance dict is searched after it
    __slots__ = (
        "_reload_lock", "_tasks", "admin", "config", "config_path", "connections", "draining",
        "loaded_signature", "loop", "metrics", "metrics_file", "reuse_port", "runtime",
        "serve_admin", "servers", "stopped",
    )  # fmt: skip

    def __init__(
        self,
        config_path: Path,
        config: Config,
        *,
        serve_admin: bool,
        reuse_port: bool,
        metrics_file: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.loaded_signature = file_signature(config_path)
        self.serve_admin = serve_admin
        self.reuse_port = reuse_port
        self.metrics_file = metrics_file
        self.loop = asyncio.get_event_loop()
        self.metrics = Metrics()
        self.connections: set[ClientConnection] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.draining = False
        self.stopped = asyncio.Event()
        self.runtime: Runtime = None  # type: ignore[assignment]  # set by start()
        self.admin: AdminListener | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()

    # --- life cycle
    async def start(self) -> None:
        self.runtime = await self._build(self.config)
        context = tls_context(self.config)
        scheme = "https" if context else "http"
        for address in self.config.listen_addresses:
            sock = listen_socket(address, self.reuse_port)
            server = await self.loop.create_server(
                lambda: ClientConnection(self, scheme), sock=sock, ssl=context, backlog=2048
            )
            self.servers.append(server)
        self._spawn(self._sweeper())
        self._spawn(self._store_checker())
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.begin_drain)
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        if file_signature(self.config_path) != self.loaded_signature:
            self._spawn(self.reload())  # the file changed while starting: a SIGHUP may be lost
        if self.serve_admin:
            if self.config.admin is not None:
                self.admin = AdminListener(self, self.config, self.loop)
            if self.config.watch:
                self._spawn(
                    watch_file(self.config_path, self.loaded_signature, self.reload, lambda: True)
                )
        LOG.info(
            "listening", listen=self.config.listen_addresses, pid=os.getpid(),
            hot_path=hot_path.MODE, **({"why": hot_path.WHY_SOURCE} if hot_path.WHY_SOURCE else {}),
        )  # fmt: skip

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def begin_drain(self) -> None:
        """SIGTERM: stop accepting, finish what is in flight, then stop."""
        if self.draining:
            return
        self.draining = True
        LOG.info("draining", connections=len(self.connections))
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.start_drain()
        self._spawn(self._finish_drain())

    async def _finish_drain(self) -> None:
        deadline = self.loop.time() + self.config.limits.drain_timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self.admin is not None:
            await self.admin.stop()
        await self.runtime.aclose()
        self.write_metrics()
        LOG.flush()
        self.stopped.set()

    # --- hooks for connections and the pipeline
    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.metrics.active_connections += 1
        if self.draining:
            conn.start_drain()

    def connection_closed(self, conn: ClientConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.metrics.active_connections -= 1

    def health_response(self, kind: str) -> Response:
        return health_body("ok" if kind == "healthz" else self.readiness())

    # --- admin controller
    def readiness(self) -> str:
        """`ok`, or why this worker should get no traffic: `draining` or `store_unavailable`."""
        if self.draining or self.runtime is None:
            return "draining"
        if self.metrics.store_down and self.runtime.store is not None:
            return "store_unavailable"
        return "ok"

    def metrics_snapshot(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    async def revoke_tokens(self, jtis: list[str]) -> int:
        from bastion.plugins.oauth.revocation import revoke_under

        runtime = self.runtime
        return await revoke_under(runtime.config, jtis, runtime.store)

    async def purge_upstream_tokens(self, route: str | None) -> int:
        from bastion.plugins.upstream_oauth.purge import purge_under

        runtime = self.runtime
        return await purge_under(runtime.config, route, runtime.store)

    async def reload(self) -> list[str]:
        """Load and compile the file again; swap atomically, or keep the old config and say why."""
        async with self._reload_lock:
            try:
                config = load_config(self.config_path)
                runtime = await self._build(config)
            except ConfigError as exc:
                problems = [f"{p}: {m}" if p else m for p, m in exc.problems]
                self.metrics.reloads["error"] += 1
                LOG.error("reload refused: the old config keeps serving", problems=problems)
                return problems
            if config.listen != self.config.listen or config.tls != self.config.tls:
                LOG.warning("listen and tls changes take effect after a restart")
            old, self.runtime, self.config = self.runtime, runtime, config
            old.close_store = old.store is not runtime.store
            old.retire()
            self.metrics.reloads["ok"] += 1
            LOG.info("config reloaded", routes=len(config.routes))
            return []

    async def _build(self, config: Config) -> Runtime:
        """Compile `config`, reusing the running store when its URL did not change."""
        current = self.runtime
        return await build_runtime(
            config,
            self.loop,
            store=current.store if current is not None else None,
            store_url=current.config.store if current is not None else None,
            metrics=self.metrics,
        )

    # --- timers
    async def _store_checker(self) -> None:
        """Check the store once a second for /readyz (SPEC §9): a worker that cannot reach it
        answers 503 there, so a load balancer sends its traffic to another node."""
        while True:
            store = self.runtime.store
            if store is None:
                self.metrics.store_down = 0
            else:
                try:
                    await asyncio.wait_for(store.check(), _STORE_CHECK_TIMEOUT)
                except Exception as exc:  # StoreUnavailable, a timeout, a closed store
                    if not self.metrics.store_down:
                        LOG.error("store unavailable: not ready", error=str(exc) or repr(exc))
                    self.metrics.store_down = 1
                else:
                    if self.metrics.store_down:
                        LOG.info("store reachable again: ready")
                    self.metrics.store_down = 0
            await asyncio.sleep(_STORE_CHECK_INTERVAL)

    async def _sweeper(self) -> None:
        last_snapshot = 0.0
        parent = os.getppid()
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            now = self.loop.time()
            if self.metrics_file is not None and os.getppid() != parent and not self.draining:
                LOG.error("the supervisor is gone; draining")  # never serve as an orphan
                self.begin_drain()
            for conn in list(self.connections):
                if conn.deadline and now > conn.deadline:
                    conn.timed_out()
            self.runtime.sweep(now)
            if self.metrics_file is not None and now - last_snapshot >= _SNAPSHOT_INTERVAL:
                last_snapshot = now
                self.write_metrics()

    def write_metrics(self) -> None:
        if self.metrics_file is None:
            return
        tmp = self.metrics_file.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.metrics.snapshot()))
            tmp.replace(self.metrics_file)


async def watch_file(
    path: Path, baseline: tuple[int, int, int] | None, reload: Any, running: Any
) -> None:
    """`watch: true`: reload when the file differs from `baseline` (the state it was loaded in,
    so a change made while starting is not missed)."""
    signature = baseline
    while running():
        await asyncio.sleep(_WATCH_INTERVAL)
        current = file_signature(path)
        if current != signature and current is not None:
            signature = current
            await reload()


def run_worker(
    config_path: Path,
    config: Config,
    *,
    serve_admin: bool,
    reuse_port: bool,
    metrics_file: Path | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT has drained every connection; the process exit code."""
    uvloop.install()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> int:
        worker = Worker(
            config_path,
            config,
            serve_admin=serve_admin,
            reuse_port=reuse_port,
            metrics_file=metrics_file,
        )
        try:
            await worker.start()
        except ConfigError as exc:
            LOG.error("invalid config", problems=[f"{p}: {m}" if p else m for p, m in exc.problems])
            return 1
        except OSError as exc:
            LOG.error(exc.strerror or str(exc))
            return 1
        release_free_memory()
        await worker.stopped.wait()
        return 0

    try:
        return loop.run_until_complete(main())
    finally:
        LOG.flush()
        close_loop(loop)
