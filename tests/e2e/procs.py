"""Start and stop real processes for whole-process tests: free ports, readiness, stop by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening:\n{out}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Stop a process by its pid (SIGTERM, then SIGKILL) and return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()
    return int(proc.returncode)


@dataclass
class Gateway:
    """A `bastion run` process with its config file, ports and captured output."""

    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int | None
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def write_config(self, config: dict[str, object]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(self.config_path)


ADMIN_TOKEN = "test-admin-token-0123456789"


def gateway_config(upstream_port: int, port: int, **extra: object) -> dict[str, object]:
    """A minimal config: one service at the upstream, one catch-all route."""
    config: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "services": [{"name": "backend", "url": f"http://127.0.0.1:{upstream_port}"}],
        "routes": [{"name": "all", "path": "/", "service": "backend"}],
    }
    config.update(extra)
    return config


@contextlib.contextmanager
def run_gateway(
    tmp_path: Path, config: dict[str, object], *args: str, env: dict[str, str] | None = None
) -> Iterator[Gateway]:
    """Write `config`, start `bastion run -c FILE ARGS`, wait for its port, stop it at the end."""
    config_path = tmp_path / "bastion.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = tmp_path / "bastion.log"
    port = int(str(config["listen"]).rsplit(":", 1)[1])
    admin = config.get("admin")
    admin_port = int(str(admin["listen"]).rsplit(":", 1)[1]) if isinstance(admin, dict) else None
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion", "run", "-c", str(config_path), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, **(env or {})},
        )
    gateway = Gateway(proc, port, admin_port, config_path, log_path)
    try:
        try:
            wait_for_port(port, proc)
            if admin_port:
                wait_for_port(admin_port, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"{exc}\n--- gateway log ---\n{log_path.read_text(errors='replace')}"
            ) from None
        yield gateway
    finally:
        stop(proc)


@contextlib.contextmanager
def run_python(script: Path, *args: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a Python helper process (an upstream) that listens on `port`; stop it by pid."""
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        stop(proc)
