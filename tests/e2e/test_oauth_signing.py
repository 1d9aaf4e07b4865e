"""`oauth` with gateway-held keys end to end (SPEC §4, §11; issue 5 point 6): `signing`, `kid`,
the JWKS endpoint, `required_scopes`, and `bastion keys rotate` reaching running gateways.

Real `bastion run` processes; tokens checked with PyJWT (an independent JOSE client) exactly as an
upstream would, from the gateway's JWKS.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import yaml

from tests.e2e.conftest import GatewayFactory
from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway

SECRET = "0123456789abcdef0123456789abcdef"  # 32 chars
CONSUMER = {"name": "c1", "client_id": "id-1", "client_secret": SECRET, "scopes": ["read", "write"]}
OAUTH: dict[str, Any] = {
    "global_auth": True,
    "signing": {"alg": "ES256"},
    "consumers": [CONSUMER],
    "_rules_": [{"_match_route_": ["route-w"], "required_scopes": ["write"]}],
}
# route-w sits under /echo so that the test upstream echoes what it was sent
ROUTES = [
    {"name": "route-w", "path": "/echo/w", "service": "backend"},
    {"name": "rest", "path": "/", "service": "backend"},
]
JWKS = "/.well-known/jwks.json"
TYP = "application/at+jwt"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def upstream(self) -> dict[str, str]:
        """The headers the test upstream echoed (lower-case names)."""
        assert self.status == 200, (self.status, self.body)
        return {k.lower(): v for k, v in self.json()["headers"]}


def call(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    host: str = "api.example.com",
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers_out, response.read())
    finally:
        conn.close()


def token_reply(port: int, scope: str | None = "read", accept: str | None = None) -> Reply:
    query = {"grant_type": "client_credentials", "client_id": "id-1", "client_secret": SECRET}
    if scope is not None:
        query["scope"] = scope
    headers = {"Accept": accept} if accept else None
    return call(port, f"/oauth2/token?{urlencode(query)}", headers=headers)


def get_token(port: int, scope: str | None = "read") -> str:
    reply = token_reply(port, scope)
    assert reply.status == 200, (reply.status, reply.body)
    token: str = reply.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def bastion(tmp_path: Path, config: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bastion ARGS -c FILE` with `config` written to FILE."""
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args, "-c", str(path)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip


def test_tokens_carry_a_kid_that_the_jwks_verifies(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ROUTES, plugins={"oauth": OAUTH}) as gw:
        token = get_token(gw.port, "read")
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256" and header["typ"] == TYP and header["kid"]

        # answered before routing and before authentication, whatever the Host
        reply = call(gw.port, JWKS, host="anything.invalid")
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"].startswith("application/json")
        assert "cache-control" in reply.headers
        keys = reply.json()["keys"]
        assert [k["kid"] for k in keys] == [header["kid"]]
        assert (keys[0]["alg"], keys[0]["use"], keys[0]["kty"]) == ("ES256", "sig", "EC")
        assert "d" not in keys[0]

        client = jwt.PyJWKClient(f"{gw.url}{JWKS}")
        signing_key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key, algorithms=["ES256"], audience="default")
        assert (claims["sub"], claims["client_id"], claims["scope"]) == ("c1", "id-1", "read")

        assert call(gw.port, JWKS, method="POST").status == 405
        assert call(gw.port, "/echo/x", headers=bearer(token)).upstream["x-mse-consumer"] == "c1"


def issue_and_verify(gw: Gateway, alg: str) -> None:
    """A token of `alg` verified by PyJWT from the JWKS, and accepted by the gateway (twice: the
    second use answers from the verified-token cache)."""
    token = get_token(gw.port, "read")
    assert jwt.get_unverified_header(token)["alg"] == alg
    signing_key = jwt.PyJWKClient(f"{gw.url}{JWKS}").get_signing_key_from_jwt(token)
    assert jwt.decode(token, signing_key, algorithms=[alg], audience="default")["sub"] == "c1"
    for _ in range(2):
        assert call(gw.port, "/echo/x", headers=bearer(token)).status == 200


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_the_other_algorithms_sign_and_verify(start_gateway: GatewayFactory, alg: str) -> None:
    oauth = {**OAUTH, "signing": {"alg": alg}}
    with start_gateway(routes=ROUTES, plugins={"oauth": oauth}) as gw:
        issue_and_verify(gw, alg)


def test_eddsa_leaves_the_log_json(start_gateway: GatewayFactory) -> None:
    oauth = {**OAUTH, "signing": {"alg": "EdDSA"}}
    with start_gateway(routes=ROUTES, plugins={"oauth": oauth}) as gw:
        issue_and_verify(gw, "EdDSA")
    not_json = []
    for line in gw.log_lines():
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == []


def test_required_scopes_and_granted_scopes(start_gateway: GatewayFactory) -> None:
    with start_gateway(routes=ROUTES, plugins={"oauth": OAUTH}) as gw:
        read = get_token(gw.port, "read")
        reply = call(gw.port, "/echo/w", headers=bearer(read))
        assert reply.status == 403, reply.body
        challenge = reply.headers["www-authenticate"]
        assert challenge == 'Bearer error="insufficient_scope", scope="write"'
        assert "headers" not in reply.body.decode()  # never forwarded
        assert call(gw.port, "/echo/x", headers=bearer(read)).status == 200  # no rule there

        write = get_token(gw.port, "read write")
        upstream = call(gw.port, "/echo/w", headers=bearer(write)).upstream
        assert upstream["x-mse-consumer"] == "c1"

        assert token_reply(gw.port, "admin").status == 400  # not granted to c1
        rfc = token_reply(gw.port, "read admin", accept="application/json")
        assert rfc.status == 400
        assert rfc.json()["error"] == "invalid_scope"


def test_required_scopes_without_signing_is_refused_by_validate(tmp_path: Path) -> None:
    oauth = {k: v for k, v in OAUTH.items() if k != "signing"}
    config = gateway_config(free_port(), free_port(), routes=ROUTES, plugins={"oauth": oauth})
    result = bastion(tmp_path, config, "validate")
    assert result.returncode == 1, result.stdout
    output = result.stdout + result.stderr
    assert "required_scopes" in output and "signing" in output
    assert "Traceback" not in output


def test_a_rotation_reaches_two_gateways_on_one_store(tmp_path: Path, upstream_port: int) -> None:
    db = tmp_path / "shared.db"
    common = {"store": f"sqlite:///{db}", "routes": ROUTES, "plugins": {"oauth": OAUTH}}
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    config_one = gateway_config(upstream_port, free_port(), **common)
    config_two = gateway_config(upstream_port, free_port(), **common)
    with run_gateway(one_dir, config_one) as one, run_gateway(two_dir, config_two) as two:
        old = get_token(one.port)
        old_kid = kid_of(old)
        assert kid_of(get_token(two.port)) == old_kid  # one ring for every node
        for gw in (one, two):
            assert call(gw.port, "/echo/x", headers=bearer(old)).status == 200

        rotated = bastion(tmp_path, config_one, "keys", "rotate", "--json")
        assert rotated.returncode == 0, rotated.stderr
        (row,) = json.loads(rotated.stdout)
        new_kid = row["kid"]
        assert row["alg"] == "ES256" and new_kid != old_kid

        pending = {one.port, two.port}
        deadline = time.monotonic() + 2.5
        while pending and time.monotonic() < deadline:
            pending = {port for port in pending if kid_of(get_token(port)) != new_kid}
            time.sleep(0.05)
        assert not pending, f"still signing with the old key: {pending}"

        for gw in (one, two):
            kids = {k["kid"] for k in call(gw.port, JWKS).json()["keys"]}
            assert kids == {old_kid, new_kid}
            assert call(gw.port, "/echo/x", headers=bearer(old)).status == 200  # still verifies
            for issuer in (one, two):  # a token of one node passes on the other
                fresh = get_token(issuer.port)
                assert call(gw.port, "/echo/x", headers=bearer(fresh)).status == 200

        listed = bastion(tmp_path, config_one, "keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        statuses = {row["kid"]: row["status"] for row in json.loads(listed.stdout)}
        assert statuses == {new_kid: "current", old_kid: "verifying only"}


def test_consumer_secret_tokens_are_refused_where_the_gateway_signs(
    start_gateway: GatewayFactory,
) -> None:
    plain = {k: v for k, v in OAUTH.items() if k not in ("signing", "_rules_")}
    with start_gateway(routes=ROUTES, plugins={"oauth": plain}) as gw:
        higress = get_token(gw.port, None)  # HS256 keyed with the client_secret
        assert call(gw.port, "/echo/x", headers=bearer(higress)).status == 200
    assert jwt.get_unverified_header(higress)["alg"] == "HS256"
    now = int(time.time())
    minted = jwt.encode(
        {"iss": "Higress-Gateway", "sub": "c1", "aud": "default", "client_id": "id-1",
         "iat": now, "exp": now + 600, "jti": "minted-1", "scope": "write"},
        SECRET, algorithm="HS256", headers={"typ": TYP},
    )  # fmt: skip
    with start_gateway(routes=ROUTES, plugins={"oauth": OAUTH}) as gw:
        for token in (higress, minted):
            for path in ("/echo/x", "/echo/w"):
                reply = call(gw.port, path, headers=bearer(token))
                assert reply.status == 401, (path, reply.status, reply.body)
                assert reply.headers["www-authenticate"].startswith("Bearer")


def test_keys_cli_errors_are_one_line(tmp_path: Path) -> None:
    plain = {k: v for k, v in OAUTH.items() if k not in ("signing", "_rules_")}
    no_signing = {"store": f"sqlite:///{tmp_path}/b.db", "plugins": {"oauth": plain}}
    for command in ("rotate", "list"):
        result = bastion(tmp_path, no_signing, "keys", command)
        assert result.returncode == 1, result.stdout
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "signing" in result.stderr and "Traceback" not in result.stderr

    redis = f"redis://:s3cretpass@127.0.0.1:{free_port()}/0"
    unreachable = {"store": redis, "plugins": {"oauth": OAUTH}, "routes": ROUTES,
                   "services": [{"name": "backend", "url": "http://127.0.0.1:9"}]}  # fmt: skip
    for command in ("rotate", "list"):
        result = bastion(tmp_path, unreachable, "keys", command, "--json")
        assert result.returncode == 1, result.stdout
        assert "unreachable" in result.stderr
        assert "s3cretpass" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
