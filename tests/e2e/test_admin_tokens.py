"""Admin API `DELETE /tokens/{jti}` (SPEC §11): a revoked token is refused within a second."""

from __future__ import annotations

import time

import jwt

from tests.e2e.conftest import GatewayFactory
from tests.e2e.test_ops import AUTH, admin, fetch

SECRET = "abcdefgh-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
OAUTH = {
    "global_auth": True,
    "consumers": [{"name": "consumer1", "client_id": "id-1", "client_secret": SECRET}],
}


def token(base_url: str) -> str:
    query = f"grant_type=client_credentials&client_id=id-1&client_secret={SECRET}"
    reply = fetch(base_url, f"/oauth2/token?{query}")
    assert reply.status == 200, reply.body
    value: str = reply.json()["access_token"]
    return value


def status_with(base_url: str, access_token: str) -> int:
    return fetch(base_url, "/echo", headers={"Authorization": f"Bearer {access_token}"}).status


def test_delete_revokes_on_the_running_gateway(start_gateway: GatewayFactory) -> None:
    with start_gateway(admin=admin(), plugins={"oauth": OAUTH}) as gw:
        revoked, kept = token(gw.url), token(gw.url)
        assert status_with(gw.url, revoked) == 200  # verified and cached
        jti = jwt.decode(revoked, options={"verify_signature": False})["jti"]
        reply = fetch(gw.admin_url, f"/tokens/{jti}", method="DELETE", headers=AUTH)
        assert (reply.status, reply.json()) == (200, {"revoked": jti})
        deadline = time.monotonic() + 5
        while status_with(gw.url, revoked) != 401:
            assert time.monotonic() < deadline, "the revoked token still passes"
            time.sleep(0.1)
        assert status_with(gw.url, kept) == 200


def test_delete_needs_the_admin_token_and_the_oauth_plugin(start_gateway: GatewayFactory) -> None:
    with start_gateway(admin=admin()) as gw:
        assert fetch(gw.admin_url, "/tokens/abc", method="DELETE").status == 401
        reply = fetch(gw.admin_url, "/tokens/abc", method="DELETE", headers=AUTH)
        assert reply.status == 409
        assert reply.json()["error"] == "no_oauth"
