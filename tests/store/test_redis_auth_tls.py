"""RedisStore with passwords and TLS, against real servers on free ports (Issue 4):

- standalone with `requirepass`: the whole contract with the right password, StoreUnavailable
  (bounded, never the password in the message) with a wrong or missing one; an ACL user confined
  to `bastion:*` keys runs the whole contract too;
- TLS (`rediss://`) with a throwaway CA: a certificate the process does not trust is refused, a
  trusted one (today only through the process-wide `SSL_CERT_FILE`) runs the whole contract;
- Sentinel whose master, replica and sentinels all require a password;
- `bastion store check` against a password-protected server.

Every process is stopped by its pid (`redis_servers.Servers`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from bastion.errors import ConfigError
from bastion.store import StoreUnavailable
from bastion.store.factory import open_store
from bastion.store.redis import RedisStore
from bastion.store.url import parse_store_url
from tests.pki import Pki, make_pki
from tests.store import redis_servers as rs
from tests.store.contract import StoreContract

HOST = rs.HOST
PASSWORD = "pw-Bastion-7f3c9e1d"
WRONG = "not-the-pw-41d2a8"
ACL_USER, ACL_PASSWORD = "bastion-node", "acl-pw-93b1c4"
# a password with an unencoded "@" (parse_store_url accepts it: it splits at the last "@")
AT_USER, AT_PASSWORD = "at-node", "left@right-secret-5e0f"
# an ACL user allowed GET and PING only
LIMITED_USER, LIMITED_PASSWORD = "get-only", "limited-pw-27ac"
T = TypeVar("T")
TLS_SAN_DNS = "bastion-redis.test"  # the server certificate names this and 127.0.0.1 only


# -- processes whose readiness needs a password or TLS ------------------------------------------


@dataclass
class CheckedProcess(rs.RedisProcess):
    """A RedisProcess that is up when `ready()` says so (not an unauthenticated plain PING)."""

    ready: Callable[[], bool] = field(default=lambda: False)

    def start(self) -> None:
        server, _ = rs.require_redis()
        logfile = self.workdir / f"redis-{self.port}.log"
        with open(logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [server, *self.args], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                text = logfile.read_text(errors="replace")
                raise RuntimeError(f"redis on port {self.port} exited:\n{text[-2000:]}")
            return self.ready()

        rs.wait_for(f"redis on port {self.port}", up)


def spawn(
    group: rs.Servers, args: list[str], port: int, ready: Callable[[], bool]
) -> CheckedProcess:
    process = CheckedProcess(port, args, group.workdir, ready=ready)
    group.processes.append(process)  # stopped by group.stop() even when start fails
    process.start()
    return process


def auth_cli(port: int, *args: str, timeout: float = 10) -> str:
    return rs.cli(port, "-a", PASSWORD, "--no-auth-warning", *args, timeout=timeout)


def auth_ping(port: int) -> bool:
    return auth_cli(port, "PING", timeout=2).strip() == "PONG"


def new_group(prefix: str) -> rs.Servers:
    rs.require_redis()
    return rs.Servers(Path(tempfile.mkdtemp(prefix=prefix)))


# -- a throwaway CA and server certificate ---------------------------------------------------


def make_redis_pki(folder: Path) -> Pki:
    """The server certificate names TLS_SAN_DNS and 127.0.0.1 only (not localhost)."""
    return make_pki(folder, dns_names=(TLS_SAN_DNS,), ip=HOST)


def redis_tls_unsupported() -> str | None:
    """None when this redis-server build has TLS, else why not (its own words)."""
    server, _ = rs.require_redis()
    done = subprocess.run(
        [server, "--port", "0", "--tls-port", "0", "--save", ""],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    # a TLS build accepts --tls-port and then exits: nothing to listen on
    if "not listen anywhere" in out:
        return None
    return out.strip().splitlines()[-1] if out.strip() else f"exit status {done.returncode}"


def tls_ping(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((HOST, port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as conn,
    ):
        conn.sendall(b"PING\r\n")
        return conn.recv(64).startswith(b"+PONG")


# -- servers ----------------------------------------------------------------------------------


@dataclass
class PasswordServer:
    port: int
    version: str

    def url(self, userinfo: str = f":{PASSWORD}") -> str:
        at = "@" if userinfo else ""
        return f"redis://{userinfo}{at}{HOST}:{self.port}/0"


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    group = new_group("bastion-redis-auth-")
    try:
        port = rs.free_port()
        spawn(
            group, rs._server_args(port, group.workdir, "--requirepass", PASSWORD), port,
            lambda: auth_ping(port),
        )  # fmt: skip
        for user, password, *commands in (
            (ACL_USER, ACL_PASSWORD, "+@all"),
            (AT_USER, AT_PASSWORD, "+@all"),
            (LIMITED_USER, LIMITED_PASSWORD, "+get", "+ping"),
        ):
            out = auth_cli(port, "ACL", "SETUSER", user, "on", f">{password}", "~bastion:*",
                           *commands)  # fmt: skip
            assert out.strip() == "OK", out
        info = auth_cli(port, "INFO", "server")
        version = next(
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("redis_version:")
        )
        yield PasswordServer(port, version)
    finally:
        group.stop()


@dataclass
class TlsServer:
    port: int
    pki: Pki


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    rs.require_redis()
    why = redis_tls_unsupported()
    if why is not None:
        pytest.skip(f"this redis-server build has no TLS support (--tls-port: {why})")
    group = new_group("bastion-redis-tls-")
    try:
        pki = make_redis_pki(group.workdir)
        port = rs.free_port()
        args = rs._server_args(
            0, group.workdir, "--tls-port", str(port), "--tls-cert-file", str(pki.cert),
            "--tls-key-file", str(pki.key), "--tls-ca-cert-file", str(pki.ca),
            "--tls-auth-clients", "no",
        )  # fmt: skip
        spawn(group, args, port, lambda: tls_ping(port, pki.ca))
        yield TlsServer(port, pki)
    finally:
        group.stop()


@dataclass
class AuthSentinels:
    servers: rs.Servers
    sentinels: list[int]

    def url(self, userinfo: str = f":{PASSWORD}", query: str = "") -> str:
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinels)
        at = "@" if userinfo else ""
        return f"redis+sentinel://{userinfo}{at}{hosts}/mymaster/0{query}"


def sentinel_group_with_password() -> AuthSentinels:
    """redis_servers.sentinel_group, with a password on the master, the replica and the
    sentinels (`requirepass`, `masterauth`, `sentinel auth-pass`)."""
    group = new_group("bastion-sentinel-auth-")
    try:
        auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
        sync = ["--repl-diskless-sync-delay", "0"]
        mport, rport = rs.free_port(), rs.free_port()
        spawn(group, rs._server_args(mport, group.workdir, *auth, *sync), mport,
              lambda: auth_ping(mport))  # fmt: skip
        replica_args = rs._server_args(
            rport, group.workdir, *auth, *sync, "--replicaof", HOST, str(mport)
        )
        spawn(group, replica_args, rport, lambda: auth_ping(rport))
        rs.wait_for(
            "replica in sync",
            lambda: "master_link_status:up" in auth_cli(rport, "INFO", "replication"),
        )
        sentinels: list[int] = []
        for _ in range(3):
            sport = rs.free_port()
            conf = group.workdir / f"sentinel-{sport}.conf"
            conf.write_text(
                f"port {sport}\nbind {HOST}\nprotected-mode no\ndir {group.workdir}\n"
                f"requirepass {PASSWORD}\n"
                f"sentinel monitor mymaster {HOST} {mport} 2\n"
                f"sentinel auth-pass mymaster {PASSWORD}\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 3000\n"
                "sentinel parallel-syncs mymaster 1\n"
            )
            spawn(group, [str(conf), "--sentinel"], sport, functools.partial(auth_ping, sport))
            sentinels.append(sport)

        def ready() -> bool:
            for sport in sentinels:
                words = auth_cli(sport, "SENTINEL", "master", "mymaster").split()
                fields = dict(zip(words[::2], words[1::2], strict=False))
                if int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(fields.get("num-slaves", 0)) < 1:
                    return False
            return True

        rs.wait_for("sentinels to know each other and the replica", ready, timeout=20)
        # without the password, a sentinel answers nothing useful
        assert "NOAUTH" in rs.cli(sentinels[0], "SENTINEL", "masters")
        return AuthSentinels(group, sentinels)
    except BaseException:
        group.stop()
        raise


@pytest.fixture(scope="module")
def auth_sentinels() -> Iterator[AuthSentinels]:
    group = sentinel_group_with_password()
    try:
        yield group
    finally:
        group.servers.stop()


# -- helpers ----------------------------------------------------------------------------------


def every_verb(store: RedisStore) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: store.get("ns", "k"),
        lambda: store.put("ns", "k", b"v", ttl=5),
        lambda: store.put_if_absent("ns", "k2", b"v"),
        lambda: store.delete("ns", "k"),
        lambda: store.consume("ns", "k"),
        lambda: store.incr("ns", "c", 60),
        lambda: store.acquire("lock", "me", 5),
        lambda: store.release("lock", "me"),
        lambda: store.index_add("ns", "i", "m"),
        lambda: store.index_remove("ns", "i", "m"),
        lambda: store.members("ns", "i"),
        lambda: store.bump("topic"),
        lambda: store.version("topic"),
        lambda: store.check(),
    ]


def assert_unavailable(url: str, *secrets: str, verbs: int = 14) -> None:
    """Every verb (or the first `verbs`) raises StoreUnavailable within 10 s, without any of
    `secrets` in its message."""

    async def main() -> None:
        store = RedisStore.from_url(parse_store_url(url))
        try:
            for verb in every_verb(store)[:verbs]:
                with pytest.raises(StoreUnavailable) as caught:
                    await asyncio.wait_for(verb(), timeout=10)  # a hang fails here
                message = str(caught.value)
                assert "unavailable" in message
                for secret in secrets:
                    assert secret not in message, message
        finally:
            await store.aclose()

    asyncio.run(main())


def round_trip(url: str) -> None:
    """get/put/consume/incr/check through a fresh store on `url`, each bounded."""

    async def main() -> None:
        store = await open_store(url)
        try:
            ns, key = "auth-tls", os.urandom(6).hex()

            async def bounded(call: Awaitable[T]) -> T:
                return await asyncio.wait_for(call, timeout=10)

            assert await bounded(store.get(ns, key)) is None
            await bounded(store.put(ns, key, b"value", ttl=30))
            assert await bounded(store.get(ns, key)) == b"value"
            assert await bounded(store.consume(ns, key)) == b"value"
            assert await bounded(store.consume(ns, key)) is None
            assert await bounded(store.incr(ns, key, 30)) == 1
            assert await bounded(store.incr(ns, key, 30)) == 2
            version, seconds = await bounded(store.check())
            assert version.count(".") >= 1 and seconds >= 0
        finally:
            await store.aclose()

    asyncio.run(main())


def store_check(tmp_path: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bastion.yaml"
    config.write_text(yaml.safe_dump({"store": url}))
    return subprocess.run(
        [sys.executable, "-m", "bastion", "store", "check", "-c", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, **env},
    )  # fmt: skip


class RealTimeContract(StoreContract):
    """The contract on real time against the URL an autouse fixture sets."""

    short = 0.25
    url = ""

    async def make_store(self) -> RedisStore:
        return RedisStore.from_url(parse_store_url(self.url))

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# -- 1. passwords on a standalone server ------------------------------------------------------


class TestPasswordContract(RealTimeContract):
    @pytest.fixture(autouse=True)
    def _server(self, password_server: PasswordServer) -> None:
        self.url = password_server.url()


class TestAclUserContract(RealTimeContract):
    """An ACL user that may touch only `bastion:*` keys: the store needs no other key."""

    @pytest.fixture(autouse=True)
    def _server(self, password_server: PasswordServer) -> None:
        self.url = password_server.url(f"{ACL_USER}:{ACL_PASSWORD}")


@pytest.mark.parametrize(
    "userinfo",
    [f":{WRONG}", "", f"{ACL_USER}:{WRONG}", f"{ACL_USER}:{PASSWORD}", f"nobody:{ACL_PASSWORD}"],
    ids=["wrong-password", "no-password", "acl-wrong-password", "acl-other-users-password",
         "unknown-user"],
)  # fmt: skip
def test_wrong_or_missing_password_is_unavailable(
    password_server: PasswordServer, userinfo: str
) -> None:
    assert_unavailable(password_server.url(userinfo), PASSWORD, WRONG, ACL_PASSWORD)


def test_percent_encoded_password(password_server: PasswordServer) -> None:
    round_trip(password_server.url(f"{AT_USER}:{AT_PASSWORD.replace('@', '%40')}"))


def test_config_error_for_a_password_holding_a_slash_hides_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url(f"redis://:pa/ss-{PASSWORD}@{HOST}:6379/0")
    assert PASSWORD not in caught.value.render()


# -- 2. TLS -----------------------------------------------------------------------------------


class TestTlsContract(RealTimeContract):
    """The whole contract over TLS, the CA trusted the only way the store offers today: the
    process-wide OpenSSL trust store (`SSL_CERT_FILE`), read by ssl.create_default_context."""

    @pytest.fixture(autouse=True)
    def _server(self, tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.pki.ca))
        self.url = f"rediss://{HOST}:{tls_server.port}/0"


def test_tls_via_ssl_query_option(tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.pki.ca))
    round_trip(f"redis://{HOST}:{tls_server.port}/0?ssl=true")


def test_certificate_of_an_unknown_ca_is_refused(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    url = f"rediss://{HOST}:{tls_server.port}/0"
    assert_unavailable(url, verbs=3)

    async def message() -> str:
        store = await open_store(url)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await asyncio.wait_for(store.get("ns", "k"), timeout=10)
            return str(caught.value)
        finally:
            await store.aclose()

    assert "certificate verify failed" in asyncio.run(message())


def test_certificate_for_another_host_name_is_refused(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA is trusted, but the certificate names 127.0.0.1 and bastion-redis.test, not
    localhost: the host name is checked too."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.pki.ca))

    async def main() -> str:
        store = await open_store(f"rediss://localhost:{tls_server.port}/0")
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await asyncio.wait_for(store.get("ns", "k"), timeout=10)
            return str(caught.value)
        finally:
            await store.aclose()

    message = asyncio.run(main())
    assert "certificate verify failed" in message, message


def test_plain_redis_on_the_tls_port_is_unavailable(tls_server: TlsServer) -> None:
    assert_unavailable(f"redis://{HOST}:{tls_server.port}/0", verbs=3)


def test_private_ca_named_in_the_url_is_trusted(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    round_trip(f"rediss://{HOST}:{tls_server.port}/0?ssl_ca_certs={tls_server.pki.ca}")


# -- 3. Sentinel with passwords ---------------------------------------------------------------


def test_sentinel_password_in_the_url_reaches_master_and_sentinels(
    auth_sentinels: AuthSentinels,
) -> None:
    round_trip(auth_sentinels.url())


def test_sentinel_password_as_query_option(auth_sentinels: AuthSentinels) -> None:
    """Today's way: the sentinels' password as ?sentinel_password=, the master's in the URL."""
    round_trip(auth_sentinels.url(query=f"?sentinel_password={PASSWORD}"))


@pytest.mark.parametrize(
    ("userinfo", "query"),
    [
        (f":{WRONG}", ""),
        (f":{WRONG}", f"?sentinel_password={WRONG}"),
        (f":{WRONG}", f"?sentinel_password={PASSWORD}"),  # right sentinels, wrong master
        (f":{PASSWORD}", f"?sentinel_password={WRONG}"),  # wrong sentinels, right master
        ("", ""),
    ],
    ids=["wrong", "wrong-both", "wrong-master", "wrong-sentinels", "none"],
)
def test_sentinel_wrong_password_is_unavailable(
    auth_sentinels: AuthSentinels, userinfo: str, query: str
) -> None:
    assert_unavailable(auth_sentinels.url(userinfo, query), PASSWORD, WRONG, verbs=3)


def test_store_check_hides_the_sentinel_password(
    auth_sentinels: AuthSentinels, tmp_path: Path
) -> None:
    result = store_check(tmp_path, auth_sentinels.url(query=f"?sentinel_password={PASSWORD}"))
    assert result.returncode == 0, result.stderr  # the store itself works
    assert PASSWORD not in result.stdout + result.stderr, result.stdout


# -- 4. `bastion store check` -----------------------------------------------------------------


def test_store_check_shows_backend_and_version_never_the_password(
    password_server: PasswordServer, tmp_path: Path
) -> None:
    for userinfo, shown in ((f":{PASSWORD}", ":***@"), (f"{ACL_USER}:{ACL_PASSWORD}",
                                                         f"{ACL_USER}:***@")):  # fmt: skip
        result = store_check(tmp_path, password_server.url(userinfo))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"store: redis://{shown}{HOST}:{password_server.port}/0" in lines, lines
        assert "backend: redis" in lines
        assert f"version: {password_server.version}" in lines
        for secret in (PASSWORD, ACL_PASSWORD):
            assert secret not in result.stdout + result.stderr


def test_store_check_with_a_wrong_password_exits_1_without_it(
    password_server: PasswordServer, tmp_path: Path
) -> None:
    result = store_check(tmp_path, password_server.url(f":{WRONG}"))
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "Traceback" not in out
    assert WRONG not in out and PASSWORD not in out


def test_store_check_over_tls(tls_server: TlsServer, tmp_path: Path) -> None:
    url = f"rediss://{HOST}:{tls_server.port}/0"
    trusted = store_check(tmp_path, url, SSL_CERT_FILE=str(tls_server.pki.ca))
    assert trusted.returncode == 0, trusted.stderr
    assert "backend: redis" in trusted.stdout.splitlines()
    unknown_ca = store_check(tmp_path, url, SSL_CERT_FILE=os.devnull)
    assert unknown_ca.returncode == 1
    assert "certificate verify failed" in unknown_ca.stderr


def test_store_check_hides_a_password_holding_an_at_sign(
    password_server: PasswordServer, tmp_path: Path
) -> None:
    result = store_check(tmp_path, password_server.url(f"{AT_USER}:{AT_PASSWORD}"))
    assert result.returncode == 0, result.stderr  # the store itself accepts it
    out = result.stdout + result.stderr
    assert AT_PASSWORD.split("@")[1] not in out, out


def test_store_check_with_a_user_lacking_permissions_exits_1_with_one_line(
    password_server: PasswordServer, tmp_path: Path
) -> None:
    result = store_check(tmp_path, password_server.url(f"{LIMITED_USER}:{LIMITED_PASSWORD}"))
    out = result.stdout + result.stderr
    assert LIMITED_PASSWORD not in out
    assert "Traceback" not in out, out
    assert result.returncode == 1
    assert "unreachable" in result.stderr
