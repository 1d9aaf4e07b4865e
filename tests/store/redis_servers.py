"""Real Redis servers for the tests: standalone, a Sentinel group and a three-master Cluster.

Every server listens on 127.0.0.1 on a free port, without persistence, in a temporary directory,
and is stopped by its pid. `require_redis()` skips the calling test when redis-server is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def require_redis() -> tuple[str, str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    if not (os.access(server, os.X_OK) and os.access(cli, os.X_OK)):
        pytest.skip("redis-server/redis-cli not installed (scripts/test installs them)")
    return server, cli


def free_port(cluster_bus: bool = False) -> int:
    """A free port; with `cluster_bus`, one below 55536 whose bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if not cluster_bus:
            return port
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for a cluster node")


def cli(port: int, *args: str, timeout: float = 10) -> str:
    _, redis_cli = require_redis()
    done = subprocess.run(
        [redis_cli, "-h", HOST, "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return done.stdout


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def ping(port: int) -> bool:
    return cli(port, "PING", timeout=2).strip() == "PONG"


@dataclass
class RedisProcess:
    port: int
    args: list[str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server, _ = require_redis()
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [server, *self.args], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                log = (self.workdir / f"redis-{self.port}.log").read_text(errors="replace")
                raise RuntimeError(f"redis on port {self.port} exited:\n{log[-2000:]}")
            return ping(self.port)

        wait_for(f"redis on port {self.port}", up)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None


def _server_args(port: int, workdir: Path, *extra: str) -> list[str]:
    return [
        "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--protected-mode", "no", *extra,
    ]  # fmt: skip


@dataclass
class Servers:
    """A group of processes stopped together."""

    workdir: Path
    processes: list[RedisProcess] = field(default_factory=list)

    def spawn(self, args: list[str], port: int) -> RedisProcess:
        process = RedisProcess(port, args, self.workdir)
        self.processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def standalone() -> tuple[Servers, RedisProcess]:
    require_redis()
    group = Servers(Path(tempfile.mkdtemp(prefix="bastion-redis-")))
    port = free_port()
    return group, group.spawn(_server_args(port, group.workdir), port)


@dataclass
class SentinelGroup:
    servers: Servers
    master: RedisProcess
    replica: RedisProcess
    sentinels: list[int]

    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/mymaster/0"

    def master_port(self) -> int:
        out = cli(self.sentinels[0], "SENTINEL", "get-master-addr-by-name", "mymaster").split()
        return int(out[1])

    def stop(self) -> None:
        self.servers.stop()


def sentinel_group() -> SentinelGroup:
    require_redis()
    group = Servers(Path(tempfile.mkdtemp(prefix="bastion-sentinel-")))
    try:
        mport, rport = free_port(), free_port()
        master = group.spawn(
            _server_args(mport, group.workdir, "--repl-diskless-sync-delay", "0"), mport
        )
        replica = group.spawn(
            _server_args(
                rport,
                group.workdir,
                "--replicaof",
                HOST,
                str(mport),
                "--repl-diskless-sync-delay",
                "0",
            ),
            rport,
        )
        wait_for(
            "replica in sync",
            lambda: "master_link_status:up" in cli(rport, "INFO", "replication"),
        )
        sentinels = []
        for _ in range(3):
            sport = free_port()
            conf = group.workdir / f"sentinel-{sport}.conf"
            conf.write_text(
                f"port {sport}\nbind {HOST}\nprotected-mode no\ndir {group.workdir}\n"
                f"sentinel monitor mymaster {HOST} {mport} 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 3000\n"
                "sentinel parallel-syncs mymaster 1\n"
            )
            group.spawn([str(conf), "--sentinel"], sport)
            sentinels.append(sport)

        def ready() -> bool:
            for sport in sentinels:
                info = cli(sport, "SENTINEL", "master", "mymaster")
                lines = info.split()
                fields = dict(zip(lines[::2], lines[1::2], strict=False))
                if int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(fields.get("num-slaves", 0)) < 1:
                    return False
            return True

        wait_for("sentinels to know each other and the replica", ready, timeout=20)
        return SentinelGroup(group, master, replica, sentinels)
    except BaseException:
        group.stop()
        raise


@dataclass
class Cluster:
    servers: Servers
    ports: list[int]

    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports)

    def stop(self) -> None:
        self.servers.stop()


def cluster() -> Cluster:
    require_redis()
    group = Servers(Path(tempfile.mkdtemp(prefix="bastion-cluster-")))
    try:
        ports = []
        for _ in range(3):
            port = free_port(cluster_bus=True)
            node_dir = group.workdir / str(port)
            node_dir.mkdir()
            group.spawn(
                _server_args(
                    port, node_dir, "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                ),
                port,
            )  # fmt: skip
            ports.append(port)
        cli(
            ports[0], "--cluster", "create", *(f"{HOST}:{p}" for p in ports),
            "--cluster-replicas", "0", "--cluster-yes", timeout=30,
        )  # fmt: skip
        wait_for(
            "cluster_state:ok",
            lambda: all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in ports),
            timeout=20,
        )
        return Cluster(group, ports)
    except BaseException:
        group.stop()
        raise
