"""Issue 4 point 5 end to end: Redis is killed and restarted under load behind a real gateway.

A redis-server with an fsync-on-every-write AOF, a `bastion run` process with the `oauth` plugin
on it, and client threads sending valid, revoked, forged and missing tokens and good and bad token
requests. Redis is killed (SIGKILL) mid-load and restarted on the same port and directory. No
request passes unauthenticated at any time, the gateway fails closed with 503 while Redis is gone
and recovers by itself, and every revocation committed before the kill is still in force after
the AOF reload.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest

from bastion.plugins.oauth.revocation import revoke
from bastion.store.factory import open_store
from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway

SECRET = "s3cr3t-" + "k" * 25  # 32 characters
WRONG_SECRET = "wrong-" + "w" * 26
CLIENT_ID = "id-1"
REVOCATION_TTL = 7400

# the timeline of the load, in seconds from its start
REVOKE_AT = 1.5  # a third token is revoked here; Redis is killed once the call returned
KILL_AT = 2.0
DOWN_FOR = 2.0
RUN_AFTER_RESTART = 3.0
POLL_GRACE = 1.5  # the revocation list is re-read once a second: a cached token may pass that long
THREADS = 8
TIMEOUT = 2.0  # client socket timeout; no answer within it counts as no answer, never as a pass


# --- a persistent redis-server, stopped by its pid ---------------------------------------------


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class PersistentRedis:
    """redis-server with `appendfsync always`: a write is on disk before its reply is sent."""

    server: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.server, "--port", str(self.port), "--bind", "127.0.0.1",
            "--protected-mode", "no", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(self.workdir),
        ]  # fmt: skip
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=out, stderr=out)
        deadline = time.monotonic() + 15
        while not _ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server not answering on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL by pid: no shutdown, no final save; only what the AOF already holds survives."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis_server() -> Iterator[PersistentRedis]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (scripts/test installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="bastion-outage-"))
    redis = PersistentRedis(server, free_port(), workdir)
    try:
        redis.start()
        yield redis
    finally:
        redis.kill()
        shutil.rmtree(workdir, ignore_errors=True)


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    status: int | None  # None: no answer (refused, reset, timed out)
    body: bytes
    t0: float  # sent, seconds from the load's start
    t1: float  # answered (or given up)


def call(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def token_path(secret: str) -> str:
    query = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret}
    return "/oauth2/token?" + urlencode(query)


def issue(port: int) -> str:
    status, body = call(port, token_path(SECRET))
    assert status == 200, (status, body)
    token: str = json.loads(body)["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jti_of(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


def forged_token() -> str:
    now = int(time.time())
    claims = {
        "iss": "Higress-Gateway", "sub": "c1", "aud": "default", "client_id": CLIENT_ID,
        "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4()),
    }  # fmt: skip
    key = "not-the-secret-" + "x" * 17
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "application/at+jwt"})


def revoke_now(url: str, jti: str) -> None:
    async def main() -> None:
        store = await open_store(url)
        try:
            assert await revoke(store, [jti], ttl=REVOCATION_TTL) == 1
        finally:
            await store.aclose()

    asyncio.run(main())


def revoked_in_store(url: str, jtis: list[str]) -> list[bool]:
    async def main() -> list[bool]:
        store = await open_store(url)
        try:
            return [await store.get("revoked", jti) is not None for jti in jtis]
        finally:
            await store.aclose()

    return asyncio.run(main())


# --- the load ------------------------------------------------------------------------------------


class Load:
    """THREADS client threads cycling through every kind of request, and a /readyz poller."""

    def __init__(self, port: int, requests: dict[str, tuple[str, dict[str, str]]]) -> None:
        self.port = port
        self.requests = requests
        self.kinds = list(requests)
        self.answers: list[Answer] = []
        self.ready: list[Answer] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.start = time.monotonic()
        self.threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(THREADS)
        ]
        self.threads.append(threading.Thread(target=self._readiness, daemon=True))

    def now(self) -> float:
        return time.monotonic() - self.start

    def run(self) -> None:
        self.start = time.monotonic()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _client(self, offset: int) -> None:
        i = offset
        while not self.done.is_set():
            kind = self.kinds[i % len(self.kinds)]
            i += 1
            path, headers = self.requests[kind]
            t0 = self.now()
            status, body = call(self.port, path, headers)
            answer = Answer(kind, status, body, t0, self.now())
            with self.lock:
                self.answers.append(answer)

    def _readiness(self) -> None:
        while not self.done.is_set():
            t0 = self.now()
            status, body = call(self.port, "/readyz")
            with self.lock:
                self.ready.append(Answer("readyz", status, body, t0, self.now()))
            time.sleep(0.1)

    def of(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """Answers to `kind` sent at or after `since` and answered before `until`."""
        return [a for a in self.answers if a.kind == kind and a.t0 >= since and a.t1 < until]


def unavailable(answer: Answer) -> bool:
    """The documented fail-closed answer: 503 `{"error": "store_unavailable"}`."""
    return answer.status == 503 and json.loads(answer.body) == {"error": "store_unavailable"}


def show(answers: list[Answer]) -> str:
    return ", ".join(f"{a.status}@{a.t0:.2f}-{a.t1:.2f}" for a in answers[:20])


def test_redis_killed_and_restarted_under_load(
    tmp_path: Path, upstream_port: int, redis_server: PersistentRedis
) -> None:
    plugins = {
        "oauth": {
            "global_auth": True,
            "consumers": [{"name": "c1", "client_id": CLIENT_ID, "client_secret": SECRET}],
            # the load sends wrong secrets by the hundred: no lockout may mask what is tested
            "lockout": {"max_failures": 1_000_000, "window": 60},
        }
    }
    config = gateway_config(upstream_port, free_port(), store=redis_server.url, plugins=plugins)
    with run_gateway(tmp_path, config) as gw:
        port = gw.port
        valid, revoked, late = issue(port), issue(port), issue(port)
        revoke_now(redis_server.url, jti_of(revoked))
        forged = forged_token()
        # before the outage: the valid and the late token pass, the revoked one does not
        for token, expected in ((valid, 200), (late, 200), (revoked, 401), (forged, 401)):
            status, body = call(port, "/echo", bearer(token))
            assert status == expected, (expected, status, body)

        load = Load(
            port,
            {
                "valid": ("/echo", bearer(valid)),
                "revoked": ("/echo", bearer(revoked)),
                "late": ("/echo", bearer(late)),
                "forged": ("/echo", bearer(forged)),
                "none": ("/echo", {}),
                "token_ok": (token_path(SECRET), {}),
                "token_bad": (token_path(WRONG_SECRET), {}),
            },
        )
        load.run()
        try:
            time.sleep(max(0.0, REVOKE_AT - load.now()))
            revoke_now(redis_server.url, jti_of(late))  # committed (fsynced) once it returns
            revoked_at = load.now()
            time.sleep(max(0.0, KILL_AT - load.now()))
            redis_server.kill()
            killed_at = load.now()
            time.sleep(max(0.0, killed_at + DOWN_FOR - load.now()))
            restarting_at = load.now()
            redis_server.start()  # same port, same dir: the AOF is replayed
            restarted_at = load.now()
            time.sleep(RUN_AFTER_RESTART)
        finally:
            load.stop()
        assert gw.proc.poll() is None, "the gateway died"
        check_answers(load, revoked_at, killed_at, restarting_at, restarted_at)
        check_after(gw, redis_server, valid, revoked, late)
        issued = [
            json.loads(a.body)["access_token"]
            for a in load.answers
            if a.kind == "token_ok" and a.status == 200
        ]
        check_log(gw, [valid, revoked, late, forged, *issued])


def check_answers(
    load: Load, revoked_at: float, killed_at: float, restarting_at: float, restarted_at: float
) -> None:
    timeline = (
        f"revoked at {revoked_at:.2f}, killed at {killed_at:.2f}, restart {restarting_at:.2f}"
        f"-{restarted_at:.2f}, {len(load.answers)} answers"
    )
    answered = [a for a in load.answers if a.status is not None]
    assert len(answered) >= 0.9 * len(load.answers), ("too many unanswered", timeline)
    for kind in load.kinds:
        assert len(load.of(kind)) >= 20, (kind, "too few requests", timeline)

    # nothing passes unauthenticated, at any time
    for kind in ("revoked", "forged", "none"):
        bad = [a for a in load.of(kind) if a.status not in (None, 401, 503)]
        assert not bad, (kind, show(bad), timeline)
    # Higress answers a wrong secret with 400 (401 with RFC 6749 errors); never a token
    bad = [a for a in load.of("token_bad") if a.status not in (None, 400, 401, 503)]
    assert not bad, ("wrong secret", show(bad), timeline)
    # the token revoked mid-load: seen by the gateway within a poll, then never again
    bad = [a for a in load.of("late", since=revoked_at + POLL_GRACE) if a.status == 200]
    assert not bad, ("late-revoked token passed", show(bad), timeline)

    # while Redis is down: fail closed with 503 store_unavailable
    down = load.of("valid", since=killed_at + POLL_GRACE, until=restarting_at)
    assert len(down) >= 5, ("too few valid requests during the outage", timeline)
    bad = [a for a in down if not unavailable(a)]
    assert not bad, ("valid token while Redis is down", show(bad), timeline)
    early = load.of("valid", since=killed_at, until=restarting_at)
    bad = [a for a in early if a.status != 200 and not unavailable(a)]
    assert not bad, ("valid token: neither 200 nor 503 during the outage", show(bad), timeline)
    for kind in ("token_ok", "token_bad"):
        down = load.of(kind, since=killed_at, until=restarting_at)
        assert down, (kind, "no token request during the outage", timeline)
        bad = [a for a in down if not unavailable(a)]
        assert not bad, (kind, "token request while Redis is down", show(bad), timeline)

    # back by itself: the valid token passes again within a few seconds, and keeps passing
    after = load.of("valid", since=restarted_at)
    ok = [a for a in after if a.status == 200]
    assert ok and ok[0].t0 < restarted_at + 2.0, ("no 200 soon after the restart", show(after))
    bad = [a for a in after if a.t0 >= ok[0].t1 and a.status != 200]
    assert not bad, ("valid token refused after the recovery", show(bad), timeline)
    # ... and both revocations committed before the kill are enforced again (AOF reloaded)
    for kind in ("revoked", "late"):
        recovered = load.of(kind, since=ok[0].t1)
        assert recovered, (kind, "no request after the recovery", timeline)
        bad = [a for a in recovered if a.status != 401]
        assert not bad, (kind, "revocation not in force after the restart", show(bad), timeline)
    issued = [a for a in load.of("token_ok", since=ok[0].t1) if a.status == 200]
    assert issued, ("no token issued after the restart", timeline)

    # /readyz: 503 store_unavailable during the outage, 200 after the restart
    ready_down = [
        a
        for a in load.ready
        if killed_at <= a.t0 and a.t1 < restarting_at and a.status == 503
        and json.loads(a.body) == {"status": "store_unavailable"}
    ]  # fmt: skip
    assert ready_down, ("/readyz never said store_unavailable", show(load.ready), timeline)
    ready_after = [a for a in load.ready if a.t0 >= restarted_at]
    assert ready_after and ready_after[-1].status == 200, (show(ready_after), timeline)
    assert json.loads(ready_after[-1].body) == {"status": "ok"}


def check_after(gw: Gateway, redis: PersistentRedis, valid: str, revoked: str, late: str) -> None:
    """No committed record was lost: both revocations are in the reloaded AOF and enforced."""
    assert revoked_in_store(redis.url, [jti_of(revoked), jti_of(late)]) == [True, True]
    for token, expected in ((valid, 200), (revoked, 401), (late, 401)):
        status, body = call(gw.port, "/echo", bearer(token))
        assert status == expected, (expected, status, body)
        if status == 200:
            upstream = {k.lower(): v for k, v in json.loads(body)["headers"]}
            assert upstream["x-mse-consumer"] == "c1"
    fresh = issue(gw.port)
    assert call(gw.port, "/echo", bearer(fresh))[0] == 200
    status, body = call(gw.port, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def check_log(gw: Gateway, tokens: list[str]) -> None:
    text = gw.log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if "store unavailable" in line]
    assert lines, "no `store unavailable` line in the gateway log"
    for secret in (SECRET, WRONG_SECRET):
        assert secret not in text, "a client secret is in the gateway log"
    for token in tokens:
        assert token not in text, "a token is in the gateway log"
        # the signature alone is as good as a leak
        assert token.rsplit(".", 1)[1] not in text, "a token signature is in the gateway log"
