"""Secrets at rest (issue 4 §6): after real traffic, no secret or token is in the store.

The gateway serves token requests (right and wrong secrets), protected calls, a revocation and
gateway-held signing keys; then the SQLite file (with its WAL) and every Redis key and value are
searched for the client secrets, the wrong secrets tried, each issued token and each token's
signature. The private signing keys are the one secret the store must hold (docs/store.md).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tests.e2e.conftest import GatewayFactory
from tests.e2e.test_ops import AUTH, admin, fetch
from tests.store import redis_servers as rs

HS_SECRET = "hs-" + secrets.token_urlsafe(24)
ES_SECRET = "es-" + secrets.token_urlsafe(24)
WRONG = "wrong-" + secrets.token_urlsafe(24)
OAUTH = {
    "global_auth": True,
    "consumers": [{"name": "c1", "client_id": "id-1", "client_secret": HS_SECRET}],
    "_rules_": [
        {
            "_match_route_": ["signed"],
            "signing": {"alg": "ES256"},
            "consumers": [{"name": "c2", "client_id": "id-2", "client_secret": ES_SECRET}],
        }
    ],
}
ROUTES = [
    {"name": "signed", "path": "/echo/signed", "service": "backend"},
    {"name": "all", "path": "/", "service": "backend"},
]


def traffic(gw_url: str, admin_url: str) -> list[str]:
    """Tokens issued, used, refused and revoked; the secrets and tokens that went by."""
    seen = [HS_SECRET, ES_SECRET, WRONG]
    for prefix, client, secret in (
        ("/echo", "id-1", HS_SECRET),
        ("/echo/signed", "id-2", ES_SECRET),
    ):
        query = f"grant_type=client_credentials&client_id={client}"
        for _ in range(3):
            reply = fetch(gw_url, f"{prefix}/oauth2/token?{query}&client_secret={secret}")
            assert reply.status == 200, reply
            token = reply.json()["access_token"]
            seen += [token, token.rsplit(".", 1)[1]]  # the token, and its signature alone
            call = fetch(gw_url, f"{prefix}/x", headers={"Authorization": f"Bearer {token}"})
            assert call.status == 200, call
        basic = base64.b64encode(f"{client}:{WRONG}".encode()).decode()
        refused = fetch(
            gw_url, f"{prefix}/oauth2/token", method="POST",
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded"},
            body=b"grant_type=client_credentials",
        )  # fmt: skip
        assert refused.status == 401, refused
        assert fetch(gw_url, f"{prefix}/oauth2/token?{query}&client_secret={WRONG}").status == 400
    jti = jwt.decode(seen[3], options={"verify_signature": False})["jti"]
    assert fetch(admin_url, f"/tokens/{jti}", method="DELETE", headers=AUTH).status == 200
    return seen


def test_the_sqlite_file_holds_no_secret_or_token(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    db = tmp_path / "at-rest.db"
    with start_gateway(
        routes=ROUTES, plugins={"oauth": OAUTH}, admin=admin(), store=f"sqlite:///{db}"
    ) as gw:
        seen = traffic(gw.url, gw.admin_url)
        files = sorted(tmp_path.glob("at-rest.db*"))
        assert db in files
        contents = b"".join(path.read_bytes() for path in files)  # the WAL while it still runs
    contents += b"".join(path.read_bytes() for path in sorted(tmp_path.glob("at-rest.db*")))
    assert b"signing-keys" in contents and b"revoked" in contents  # the store was written
    found = [value[:12] for value in seen if value.encode() in contents]
    assert not found, f"in clear in the SQLite store: {found}"


@pytest.fixture
def redis_port() -> Iterator[int]:
    group, server = rs.standalone()
    try:
        yield server.port
    finally:
        group.stop()


def test_the_redis_keys_hold_no_secret_or_token(
    start_gateway: GatewayFactory, redis_port: int
) -> None:
    import redis

    with start_gateway(
        routes=ROUTES, plugins={"oauth": OAUTH}, admin=admin(),
        store=f"redis://127.0.0.1:{redis_port}/0",
    ) as gw:  # fmt: skip
        seen = traffic(gw.url, gw.admin_url)
    client = redis.Redis(host="127.0.0.1", port=redis_port)
    dump = bytearray()
    keys = list(client.scan_iter(match="*", count=1000))
    assert keys and all(key.startswith(b"bastion:") for key in keys)
    for key in keys:  # each value read by its type: DUMP may compress and hide a substring
        dump += key + b"\n"
        kind = client.type(key)
        if kind == b"string":
            dump += client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                dump += field + b"=" + value + b"\n"
        elif kind == b"set":
            dump += b"\n".join(client.smembers(key))
        elif kind == b"zset":
            dump += b"\n".join(client.zrange(key, 0, -1))
        elif kind == b"list":
            dump += b"\n".join(client.lrange(key, 0, -1))
        else:
            raise AssertionError(f"a key of an unexpected type: {key!r} {kind!r}")
    client.close()
    assert b"signing-keys" in dump and b"revoked" in dump
    found = [value[:12] for value in seen if value.encode() in dump]
    assert not found, f"in clear in Redis: {found}"
