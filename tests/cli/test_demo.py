"""`bastion demo`: a ready-to-try gateway whose printed curl commands work; SIGTERM stops it."""

from __future__ import annotations

import base64
import contextlib
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.e2e.procs import free_port, stop, wait_for_port
from tests.e2e.test_ops import Reply, eventually, fetch


@dataclass
class Curl:
    """What one printed curl command would send."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)

    def send(self) -> Reply:
        parts = urlsplit(self.url)
        assert parts.scheme == "http", self.url
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        body = "&".join(self.data).encode() if self.data else None
        headers = dict(self.headers)
        if body is not None:
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return fetch(
            f"http://{parts.hostname}:{parts.port or 80}", path, self.method, headers, body
        )


FLAGS = {"-s", "-S", "-sS", "-i", "-v", "-f", "-L", "--silent", "--show-error", "--include", "-fsS"}
WITH_VALUE = {"-X", "--request", "-H", "--header", "-d", "--data", "--data-raw", "-u", "--user"}


def parse_curl(words: list[str]) -> Curl:
    url = ""
    method = ""
    headers: dict[str, str] = {}
    data: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word in WITH_VALUE:
            value = words[i + 1]
            i += 2
            if word in ("-X", "--request"):
                method = value
            elif word in ("-H", "--header"):
                name, _, val = value.partition(":")
                headers[name.strip()] = val.strip()
            elif word in ("-u", "--user"):
                headers["Authorization"] = "Basic " + base64.b64encode(value.encode()).decode()
            else:
                data.append(value)
            continue
        if word.startswith("http://"):
            url = word
        elif word not in FLAGS:
            raise AssertionError(f"this test does not know the curl argument {word!r}: {words}")
        i += 1
    assert url, words
    return Curl(url, method or ("POST" if data else "GET"), headers, data)


def curl_commands(text: str) -> list[list[str]]:
    """The curl commands in the demo's output (continued lines joined), as argument lists."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        start = line.find("curl ")
        if start >= 0 and "$(" not in line:  # not a command substitution a shell would run
            commands.append(shlex.split(line[start:], comments=True))
    return commands


@contextlib.contextmanager
def demo(tmp_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion", "demo", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        yield proc
    finally:
        stop(proc)


def test_demo_prints_working_curl_commands(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "demo.log"
    with demo(tmp_path, port) as proc:
        try:
            wait_for_port(port, proc, timeout=30)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')}") from None

        def printed() -> list[list[str]]:
            commands = curl_commands(log_path.read_text(errors="replace"))
            assert commands, f"no curl command printed yet:\n{log_path.read_text()}"
            return commands

        commands = eventually(printed, timeout=10)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        runnable = [parse_curl(words) for words in commands if not any("$" in w for w in words)]
        assert runnable, commands
        replies = [(curl, curl.send()) for curl in runnable]
        for curl, reply in replies:
            assert reply.status < 500, (curl, reply)
        proxied = [
            reply
            for curl, reply in replies
            if urlsplit(curl.url).port == port and reply.status == 200
        ]
        assert proxied, replies
        # the printed token request gives a token that opens the protected route
        tokens = [reply for curl, reply in replies if "/oauth2/token" in curl.url]
        assert tokens and tokens[0].status == 200, replies
        access_token = tokens[0].json()["access_token"]
        protected = f"http://127.0.0.1:{port}"
        assert fetch(protected, "/api/items").status == 401
        reply = fetch(protected, "/api/items", headers={"Authorization": f"Bearer {access_token}"})
        assert reply.status == 200, reply
        received = {k.lower(): v for k, v in reply.json()["headers"].items()}
        assert received["x-mse-consumer"] == "demo-consumer"
        assert stop(proc, signal.SIGTERM) == 0, log_path.read_text(errors="replace")
    assert "Traceback" not in log_path.read_text(errors="replace")

    def all_gone() -> None:
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                assert child.status() == psutil.STATUS_ZOMBIE, child

    eventually(all_gone)


def test_demo_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with demo(tmp_path, port) as proc:
            assert proc.wait(30) != 0
    out = (tmp_path / "demo.log").read_text(errors="replace")
    assert "Traceback" not in out
    assert str(port) in out


@pytest.mark.parametrize("args", [["--port", "notaport"], ["--bogus"]])
def test_demo_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bastion", "demo", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "usage" in (result.stdout + result.stderr).lower()
