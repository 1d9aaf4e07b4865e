"""The test IdP (tests/e2e/idp_app.py) as pytest fixtures, plus small HTTP and JWT helpers.

Fixtures (import them into a test module, or into conftest.py, to use them):

- `idp_server` (session): one HTTP IdP process for the whole session.
- `idp` (function): the same process, reset to the defaults before the test.

`with start_tls_idp(tmp_path) as (idp, ca_file):` starts an HTTPS IdP whose certificate (for
127.0.0.1 and localhost) is signed by a throwaway CA written to `ca_file`.

The default clients (idp_app.DEFAULT_CLIENTS) are `post-client`, `basic-client`, `jwt-client`
and `public-client`; register more with `idp.control(clients={...})`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.e2e.idp_app import ASSERTION_TYPE, DEFAULT_CLIENTS, DEFAULT_USERS
from tests.e2e.procs import free_port, run_python
from tests.pki import make_pki

IDP_APP = Path(__file__).with_name("idp_app.py")

__all__ = [
    "ASSERTION_TYPE",
    "DEFAULT_CLIENTS",
    "DEFAULT_USERS",
    "HttpResult",
    "Idp",
    "SigningKey",
    "client_assertion",
    "client_auth",
    "generate_key",
    "http_request",
    "idp",
    "idp_server",
    "make_tls_files",
    "post_form",
    "start_idp",
    "start_tls_idp",
]


# --- HTTP -----------------------------------------------------------------------------------------


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    ca_file: Path | str | None = None,
    timeout: float = 10,
) -> HttpResult:
    """One request on a fresh connection; any status is returned, not raised. HTTPS verifies the
    server against `ca_file` (or the system's CAs when None)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return HttpResult(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def post_form(
    url: str,
    form: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    ca_file: Path | str | None = None,
    timeout: float = 10,
) -> HttpResult:
    """POST `form` as application/x-www-form-urlencoded (an OAuth token request)."""
    return http_request(
        "POST",
        url,
        body=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        ca_file=ca_file,
        timeout=timeout,
    )


# --- Keys and client assertions ------------------------------------------------------------------


@dataclass
class SigningKey:
    """An asymmetric key pair for private_key_jwt: the PEM (PKCS#8) and the public JWK with kid."""

    alg: str  # RS256, ES256 or EdDSA
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]

    def private_jwk(self) -> dict[str, Any]:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        algorithm = jwt.get_algorithm_by_name(self.alg)
        data: dict[str, Any] = json.loads(algorithm.to_jwk(key))
        data.pop("key_ops", None)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}


def generate_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh RSA 2048 (RS256/PS256), P-256 (ES256) or Ed25519 (EdDSA) key."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if alg in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported alg {alg}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    public = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private.public_key()))
    public.pop("key_ops", None)
    return SigningKey(alg, kid, pem, {**public, "kid": kid, "alg": alg, "use": "sig"})


def client_assertion(
    client_id: str,
    key: str | SigningKey,
    audience: str,
    alg: str | None = None,
    **claims: Any,
) -> str:
    """An RFC 7523 client assertion: HS256/HS512 with a client secret (`key` a str;
    client_secret_jwt) or signed with a SigningKey (private_key_jwt, kid in the header).
    `claims` override or add claims; a claim set to None is left out."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    if isinstance(key, SigningKey):
        return jwt.encode(
            payload, key.private_pem, algorithm=alg or key.alg, headers={"kid": key.kid}
        )
    return jwt.encode(payload, key.encode(), algorithm=alg or "HS256", headers={"typ": "JWT"})


def client_auth(
    auth_method: str,
    client_id: str,
    token_endpoint: str,
    secret: str | None = None,
    key: SigningKey | None = None,
    alg: str | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The form fields and headers that authenticate a client at a token endpoint with
    `auth_method` (client_secret_post | client_secret_basic | client_secret_jwt |
    private_key_jwt | none); add grant_type, scope and so on to the form."""
    if auth_method == "client_secret_post":
        return {"client_id": client_id, "client_secret": secret or ""}, {}
    if auth_method == "client_secret_basic":
        user = urllib.parse.quote_plus(client_id) + ":" + urllib.parse.quote_plus(secret or "")
        return {}, {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    if auth_method in ("client_secret_jwt", "private_key_jwt"):
        signer: str | SigningKey | None = secret if auth_method == "client_secret_jwt" else key
        if signer is None:
            need = "a secret" if auth_method == "client_secret_jwt" else "a key"
            raise ValueError(f"{auth_method} needs {need}")
        assertion = client_assertion(client_id, signer, token_endpoint, alg=alg)
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}, {}
    if auth_method == "none":
        return {"client_id": client_id}, {}
    raise ValueError(f"unknown auth method {auth_method}")


# --- TLS material -------------------------------------------------------------------------------


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it, written as
    PEM files. Returns (ca_file, cert_file, key_file)."""
    pki = make_pki(directory)
    return pki.ca, pki.cert, pki.key


# --- The IdP process ------------------------------------------------------------------------------


@dataclass
class Idp:
    """A running idp_app.py process."""

    port: int
    proc: subprocess.Popen[bytes]
    https: bool = False
    ca_file: Path | None = None  # the CA that signed an HTTPS IdP's certificate

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/token"

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        result = http_request(
            method, self.url + path, body=body, headers=headers, ca_file=self.ca_file
        )
        if result.status != 200:
            raise AssertionError(f"IdP {method} {path}: {result.status} {result.body!r}")
        return result.json()

    def control(self, **settings: Any) -> dict[str, Any]:
        """Change settings (expires_in, token_type, delay, fail, clients, users); returns all."""
        result: dict[str, Any] = self._call("POST", "/control", settings)
        return result

    def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/control")
        return result

    def stats(self) -> dict[str, Any]:
        """{"token_requests", "tokens_issued", "requests": [{headers, form, time, client_id,
        auth_method, status}, ...] (the last 100)}."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset(self) -> None:
        self._call("POST", "/reset", {})

    def token(self, form: dict[str, str], headers: dict[str, str] | None = None) -> HttpResult:
        """POST a token request straight to this IdP (for checks; the gateway does its own)."""
        return post_form(self.token_endpoint, form, headers=headers, ca_file=self.ca_file)


@contextlib.contextmanager
def start_idp(tls: tuple[Path, Path, Path] | None = None) -> Iterator[Idp]:
    """Start idp_app.py on a free port (HTTPS with `tls` = (ca_file, cert_file, key_file)); stop
    it by pid at the end."""
    port = free_port()
    args = ["--port", str(port)]
    if tls is not None:
        args += ["--tls-cert", str(tls[1]), "--tls-key", str(tls[2])]
    with run_python(IDP_APP, *args, port=port) as proc:
        yield Idp(port, proc, https=tls is not None, ca_file=tls[0] if tls else None)


@contextlib.contextmanager
def start_tls_idp(tmp_path: Path) -> Iterator[tuple[Idp, Path]]:
    """An HTTPS IdP with a certificate from a throwaway CA: yields (idp, ca_file)."""
    files = make_tls_files(tmp_path / "idp-tls")
    with start_idp(tls=files) as server:
        yield server, files[0]


@pytest.fixture(scope="session")
def idp_server() -> Iterator[Idp]:
    """One HTTP IdP process for the session (use `idp` to get it reset before a test)."""
    with start_idp() as server:
        yield server


@pytest.fixture
def idp(idp_server: Idp) -> Idp:
    """The session's HTTP IdP, reset to the default settings, clients, users and counters."""
    idp_server.reset()
    return idp_server
