"""Supervisor: `bastion run --workers N`.

It starts N worker processes that each bind the port with SO_REUSEPORT (the kernel spreads the
connections), serves the admin API, validates a reload before passing SIGHUP on, sums the
workers' metrics, and restarts a worker that dies (giving up on one that cannot start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bastion.config.loader import load_config_text, read_config_text
from bastion.config.model import Config
from bastion.errors import ConfigError
from bastion.gateway.runtime import build_runtime
from bastion.gateway.server import (
    AdminListener,
    close_loop,
    file_signature,
    listen_socket,
    watch_file,
)
from bastion.ops.logging import LOG
from bastion.ops.metrics import merge

_QUICK_EXIT = 5.0  # seconds: a worker that dies sooner than this after its start failed to start
_QUICK_EXITS_LIMIT = 3  # in a row, for one worker slot: the supervisor gives up


class Supervisor:
    """`--workers N`: N worker processes, the admin API, reload validation, merged metrics."""

    def __init__(self, config_path: Path, config: Config, workers: int) -> None:
        self.config_path = config_path
        self.config = config
        self.count = workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        # private (0700) state shared with the workers: their metrics, and the last config that
        # passed validation, which is what workers load (a restarted worker must not pick up an
        # edited but unvalidated file)
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="bastion-"))
        self.snapshot = self.metrics_dir / "config.yaml"
        self.loaded_signature = file_signature(config_path)
        self.started_at: dict[int, float] = {}
        self.quick_failures: dict[int, int] = {}
        self._write_snapshot(config_path.read_text(encoding="utf-8"))
        self.stopping = False
        self.reloads = {"ok": 0, "error": 0}
        self._reload_lock: asyncio.Lock | None = None

    def _spawn(self, index: int) -> None:
        command = [
            sys.executable,
            "-m",
            "bastion.gateway.worker_main",
            "--config",
            str(self.snapshot),
            "--metrics-file",
            str(self.metrics_dir / f"worker-{index}.json"),
        ]
        self.procs[index] = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.started_at[index] = time.monotonic()

    def _write_snapshot(self, text: str) -> None:
        tmp = self.snapshot.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold secrets
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        tmp.replace(self.snapshot)

    def metrics_snapshot(self) -> dict[str, Any]:
        snapshots = []
        for path in self.metrics_dir.glob("worker-*.json"):
            with contextlib.suppress(OSError, ValueError):
                snapshots.append(json.loads(path.read_text()))
        total = merge(snapshots)
        total["reloads"] = dict(self.reloads)
        return total

    def readiness(self) -> str:
        if self.stopping or any(p.poll() is not None for p in self.procs.values()):
            return "draining"
        if self.metrics_snapshot().get("store_down"):
            return "store_unavailable"  # some worker's last store check failed
        return "ok"

    async def revoke_tokens(self, jtis: list[str]) -> int:
        from bastion.plugins.oauth.revocation import revoke_under

        return await revoke_under(self.config, jtis)  # a store of its own, for this call

    async def purge_upstream_tokens(self, route: str | None) -> int:
        from bastion.plugins.upstream_oauth.purge import purge_under

        return await purge_under(self.config, route)

    async def reload(self) -> list[str]:
        assert self._reload_lock is not None
        async with self._reload_lock:
            try:
                text = read_config_text(self.config_path)
                config = load_config_text(text, source=str(self.config_path))
                runtime = await build_runtime(config, asyncio.get_running_loop())
                await runtime.aclose()
            except ConfigError as exc:
                problems = [f"{p}: {m}" if p else m for p, m in exc.problems]
                self.reloads["error"] += 1
                LOG.error("reload refused: the old config keeps serving", problems=problems)
                return problems
            self.config = config
            self._write_snapshot(text)
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)
            self.reloads["ok"] += 1
            LOG.info("config reloaded", workers=len(self.procs))
            return []

    def run(self) -> int:
        uvloop.install()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self._main(loop))
        finally:
            LOG.flush()
            close_loop(loop)
            for path in self.metrics_dir.glob("*"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.metrics_dir.rmdir()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> int:
        self._reload_lock = asyncio.Lock()
        try:
            admin = AdminListener(self, self.config, loop) if self.config.admin else None
        except OSError as exc:
            LOG.error(exc.strerror or str(exc))
            return 1
        try:
            for address in self.config.listen_addresses:  # fail now, not in a restart loop
                listen_socket(address, reuse_port=True).close()
        except OSError as exc:
            LOG.error(exc.strerror or str(exc))
            return 1
        for index in range(self.count):
            self._spawn(index)
        stop = asyncio.Event()

        def on_stop() -> None:
            self.stopping = True
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        if self.config.watch:
            loop.create_task(
                watch_file(
                    self.config_path, self.loaded_signature, self.reload, lambda: not self.stopping
                )
            )
        LOG.info("supervising", workers=self.count, pid=os.getpid())
        while not stop.is_set():
            for index, proc in list(self.procs.items()):
                if proc.poll() is None or self.stopping:
                    continue
                quick = time.monotonic() - self.started_at[index] < _QUICK_EXIT
                self.quick_failures[index] = self.quick_failures.get(index, 0) + 1 if quick else 0
                if self.quick_failures[index] >= _QUICK_EXITS_LIMIT:
                    LOG.error("a worker keeps failing as it starts; stopping", code=proc.returncode)
                    on_stop()
                    break
                LOG.error("worker exited; starting another", worker=index, code=proc.returncode)
                self._spawn(index)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        codes = []
        deadline = loop.time() + self.config.limits.drain_timeout + 5
        for proc in self.procs.values():
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            codes.append(proc.wait())
        if admin is not None:
            await admin.stop()
        return 0 if all(c == 0 for c in codes) else 1
