"""A real, independent OpenID provider for the tests: the npm package `oidc-provider` (9.x).

The session fixture `oidc_provider` installs the package with npm into a cache folder outside the
git tree when it is missing (`$BASTION_TEST_CACHE` or `$XDG_CACHE_HOME/bastion-tests` or
`~/.cache/bastion-tests`, then `node/oidc-provider-9`), starts
tests/e2e/oidc_provider_server.mjs with node on a free port of 127.0.0.1, reads the discovery
document and yields an `OidcProvider`. The node process is stopped by pid at the end.

Registered clients (all with the `client_credentials` grant and scopes `openid api:read`), one per
client authentication method, in `OidcProvider.clients` keyed by the method:
`client_secret_post`, `client_secret_basic`, `client_secret_jwt` (HS256 and HS512 accepted),
`private_key_jwt` (RS256; the RSA key is generated here) and `private_key_jwt_es256` (ES256), and
`none` (oidc-provider accepts the client credentials grant for a client without authentication).
Access tokens are opaque (oidc-provider's default without a resource indicator); the
introspection endpoint tells whether one is active.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.idp import SigningKey, generate_key, http_request
from tests.e2e.procs import free_port, stop, wait_for_port

SERVER_SCRIPT = Path(__file__).with_name("oidc_provider_server.mjs")
PACKAGE = "oidc-provider"
MAJOR = "9"
SCOPES = ["openid", "offline_access", "api:read", "api:write"]
CLIENT_SCOPE = "openid api:read"


def cache_root() -> Path:
    if os.environ.get("BASTION_TEST_CACHE"):
        return Path(os.environ["BASTION_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bastion-tests"


def package_dir() -> Path:
    """The npm prefix that holds node_modules/oidc-provider (keyed by the major version)."""
    return cache_root() / "node" / f"{PACKAGE}-{MAJOR}"


def installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / PACKAGE / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version) if str(version).startswith(f"{MAJOR}.") else None


def ensure_installed() -> Path:
    """Install oidc-provider@9 into the cache when missing; skip without node/npm, fail clearly
    when npm fails. The install goes to a temporary folder renamed into place, so an interrupted
    install never looks complete; a lock file keeps parallel sessions from installing twice."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the oidc-provider OpenID provider")
    prefix = package_dir()
    if installed_version(prefix):
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with (prefix.parent / f"{prefix.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(prefix):
            return prefix
        staging = prefix.with_name(f"{prefix.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        command = [
            "npm",
            "install",
            "--prefix",
            str(staging),
            f"{PACKAGE}@{MAJOR}",
            "--no-audit",
            "--no-fund",
            "--no-save",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"`{' '.join(command)}` took more than {exc.timeout}s", pytrace=False)
        if done.returncode != 0 or not installed_version(staging):
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(
                f"`{' '.join(command)}` failed (exit {done.returncode}); the oidc-provider tests "
                f"need the npm registry once, later runs use {prefix}.\n"
                f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
                pytrace=False,
            )
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
    return prefix


@dataclass
class OidcClient:
    """A client registered at the provider. `secret` is None for private_key_jwt and none."""

    client_id: str
    auth_method: str  # token_endpoint_auth_method
    secret: str | None = None
    key: SigningKey | None = None  # private_key_jwt: the client's key (PEM, kid, public JWK)
    scope: str = CLIENT_SCOPE

    @property
    def private_key_pem(self) -> str | None:
        return self.key.private_pem if self.key else None

    @property
    def kid(self) -> str | None:
        return self.key.kid if self.key else None

    @property
    def alg(self) -> str | None:
        return self.key.alg if self.key else None

    def metadata(self) -> dict[str, Any]:
        """oidc-provider client metadata."""
        data: dict[str, Any] = {
            "client_id": self.client_id,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": self.auth_method,
            "scope": self.scope,
        }
        if self.secret is not None:
            data["client_secret"] = self.secret
        if self.key is not None:
            data["jwks"] = {"keys": [self.key.public_jwk]}
            data["token_endpoint_auth_signing_alg"] = self.key.alg
        return data


@dataclass
class OidcProvider:
    """A running oidc-provider node process."""

    issuer: str
    port: int
    discovery: dict[str, Any]
    clients: dict[str, OidcClient]  # keyed by auth method (see the module docstring)
    proc: subprocess.Popen[bytes]
    log_path: Path
    settings_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.discovery["jwks_uri"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.discovery["introspection_endpoint"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def default_clients() -> dict[str, OidcClient]:
    def secret() -> str:
        return secrets.token_urlsafe(48)  # 64 characters: long enough for HS512

    return {
        "client_secret_post": OidcClient("cc-post", "client_secret_post", secret()),
        "client_secret_basic": OidcClient("cc-basic", "client_secret_basic", secret()),
        "client_secret_jwt": OidcClient("cc-secret-jwt", "client_secret_jwt", secret()),
        "private_key_jwt": OidcClient(
            "cc-private-key-jwt", "private_key_jwt", key=generate_key("RS256", "cc-rsa-1")
        ),
        "private_key_jwt_es256": OidcClient(
            "cc-private-key-jwt-es256", "private_key_jwt", key=generate_key("ES256", "cc-ec-1")
        ),
        "none": OidcClient("cc-public", "none"),
    }


@contextlib.contextmanager
def start_oidc_provider(
    workdir: Path, clients: dict[str, OidcClient] | None = None, **settings: Any
) -> Iterator[OidcProvider]:
    """Install when needed, start the node process, wait for discovery; stop it by pid."""
    prefix = ensure_installed()
    clients = clients if clients is not None else default_clients()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    signing_key = generate_key("RS256", "provider-rs256-1")
    config = {
        "prefix": str(prefix),
        "port": port,
        "issuer": issuer,
        "clients": [client.metadata() for client in clients.values()],
        "jwks": {"keys": [signing_key.private_jwk()]},
        "scopes": SCOPES,
        "cookieKeys": [secrets.token_urlsafe(32)],
        **settings,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    settings_path = workdir / "oidc-provider.json"
    settings_path.write_text(json.dumps(config, indent=2))
    settings_path.chmod(0o600)
    log_path = workdir / "oidc-provider.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["node", str(SERVER_SCRIPT), str(settings_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "NODE_ENV": "test"},
        )
    try:
        try:
            wait_for_port(port, proc, timeout=30)
            answer = http_request("GET", f"{issuer}/.well-known/openid-configuration")
            if answer.status != 200:
                raise RuntimeError(f"discovery answered {answer.status}: {answer.body!r}")
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise RuntimeError(
                f"oidc-provider did not start: {exc}\n--- log ---\n"
                f"{log_path.read_text(errors='replace')}"
            ) from None
        yield OidcProvider(issuer, port, answer.json(), clients, proc, log_path, settings_path)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """oidc-provider on a free port for the whole session (see the module docstring)."""
    with start_oidc_provider(tmp_path_factory.mktemp("oidc-provider")) as provider:
        yield provider
