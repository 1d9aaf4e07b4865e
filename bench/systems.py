"""The servers of the benchmark: nginx (from generated configs), Bastion, the Python upstream.

Every server is started from files generated in the run's temp dir, listens on 127.0.0.1 only, and
is stopped by its pid: SIGTERM, SIGKILL after a grace period, then SIGKILL to any child it left.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from measure import tree
from pyupstream import BODY

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
START_TIMEOUT = 30.0  # seconds a server has to become ready
NGINX_UPSTREAM_KEEPALIVE = 128  # idle keep-alive connections nginx-proxy keeps, as in stack-bench
SANITY_PATH = "/bench?sanity=1"
OAUTH_CLIENT_ID = "bench-client"
OAUTH_CLIENT_SECRET = "bench-secret-0123456789abcdef-0123456789"  # 32+ characters
TOKEN_PATH = (
    "/oauth2/token?grant_type=client_credentials"
    f"&client_id={OAUTH_CLIENT_ID}&client_secret={OAUTH_CLIENT_SECRET}"
)
INVALID_TOKEN_BODY = b"Invalid Jwt token"  # the oauth plugin's 401 body
IDP_APP = ROOT / "tests" / "e2e" / "idp_app.py"  # the test IdP (issue 6): POST /token, /stats
IDP_CLIENT_ID = "post-client"  # one of idp_app.DEFAULT_CLIENTS (client_secret_post)
IDP_CLIENT_SECRET = "post-secret"
# The 10 MB scenarios (issue 7): a 10 MiB file the upstream serves, a 10 MiB body it must read.
BIG_SIZE = 10 * 2**20  # bytes of the download and of the upload body: 10 MiB (10,485,760)
BIG_PATH = "/big"  # the upstream serves BIG_SIZE bytes from a file (sendfile)
UPLOAD_PATH = "/upload"  # the upstream reads the whole body, then answers 200 with its length
UPLOAD_SINK_PATH = "/upload-sink"  # the upstream's internal `return 200` the upload ends in
BIG_MAX_BODY = 20 * 2**20  # body limit set on every system for the upload: 20 MiB
BIG_FILE = "big.bin"
BIG_TIMEOUT = 30.0  # seconds for a sanity request that moves 10 MiB
NGINX_BIG_BUFFER = "256k"  # nginx-proxy's body and proxy buffers in the 10 MB configs


def find_nginx() -> str | None:
    """nginx lives in /usr/sbin, which is not on a non-root user's PATH."""
    return shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def bastion_executable() -> Path:
    """The `bastion` console script of the venv running this benchmark."""
    return Path(sys.executable).parent / "bastion"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def fetch(
    port: int,
    path: str = "/",
    headers: tuple[str, ...] = (),
    timeout: float = 5.0,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[int, bytes]:
    """One request (a GET by default) on 127.0.0.1:`port` with `headers` ("Name: value");
    (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        fields = {name: value for name, _, value in (h.partition(": ") for h in headers)}
        conn.request(method, path, body=body, headers=fields)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class StopResult:
    """How a stop went: seconds from SIGTERM to exit, and the pids that needed a SIGKILL."""

    seconds: float
    killed: list[int]


@dataclass
class Server:
    """A started server process: its name, port, log file and the process itself."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, message: str) -> RuntimeError:
        """An error carrying the tail of every log in the server's directory."""
        logs = "".join(
            f"\n--- {path} ---\n{log_tail(path)}"
            for path in sorted(self.log_path.parent.glob("*.log"))
        )
        return RuntimeError(f"{self.name}: {message}{logs}")

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with {self.proc.returncode} before listening")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise self.fail(f"not listening on 127.0.0.1:{self.port} after {timeout:.0f}s")

    def wait_healthy(self, path: str, timeout: float = START_TIMEOUT) -> None:
        """Poll GET `path` until it answers 200."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with {self.proc.returncode} before {path} answered 200")
            try:
                status, _ = fetch(self.port, path, timeout=1.0)
                if status == 200:
                    return
                last = f"status {status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise self.fail(f"{path} did not answer 200 after {timeout:.0f}s ({last})")

    def check_body(
        self, headers: tuple[str, ...] = (), expect: int = 200, expect_body: bytes = BODY
    ) -> None:
        """The sanity GET: the exact upstream body with a 200 (or the given answer), or an error."""
        try:
            status, body = fetch(self.port, SANITY_PATH, headers)
        except OSError as exc:
            raise self.fail(f"sanity GET failed: {exc}") from None
        if status != expect or body != expect_body:
            raise self.fail(
                f"sanity GET returned {status} {body[:200]!r}, expected {expect} {expect_body!r}"
            )

    def check_transfer(self, direction: str) -> None:
        """The sanity request of a 10 MB scenario: `GET /big` must return the upstream's whole
        file; `POST /upload` with a 10 MiB body must get 200 and the length the upstream read."""
        try:
            if direction == "download":
                status, body = fetch(self.port, BIG_PATH, timeout=BIG_TIMEOUT)
                ok = status == 200 and body == big_payload()
            else:
                headers = ("Content-Type: application/octet-stream",)
                status, body = fetch(
                    self.port,
                    UPLOAD_PATH,
                    headers,
                    BIG_TIMEOUT,
                    method="POST",
                    body=upload_payload(),
                )
                ok = status == 200 and upload_read(body) >= BIG_SIZE
        except OSError as exc:
            raise self.fail(f"sanity {direction} failed: {exc}") from None
        if not ok:
            raise self.fail(
                f"sanity {direction} returned {status}, {len(body):,} bytes {body[:100]!r}; "
                f"expected 200 and {BIG_SIZE:,} bytes moved"
            )

    def stop(self, grace: float = STOP_GRACE) -> StopResult:
        """SIGTERM by pid, SIGKILL after `grace`; then SIGKILL children it left, each by pid."""
        children = tree(self.proc.pid)[1:]
        started, killed = time.monotonic(), []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                killed.append(self.proc.pid)
                self.proc.wait(5)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running():  # same pid *and* start time: never a recycled pid
                    child.kill()
                    killed.append(child.pid)
        return StopResult(time.monotonic() - started, killed)


def spawn(
    name: str, command: list[str], cwd: Path, port: int, env: dict[str, str] | None = None
) -> Server:
    """Start `command` in its own session (a Ctrl-C reaches only us; we stop it by pid)."""
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, proc, port, log_path)


def _started(server: Server, ready: str | None) -> Server:
    """Wait until `server` listens (and answers 200 on `ready` if given); stop it on failure."""
    try:
        server.wait_listening()
        if ready:
            server.wait_healthy(ready)
    except BaseException:
        server.stop()
        raise
    return server


# --- nginx -------------------------------------------------------------------------------------


def nginx_conf(
    prefix: Path, port: int, workers: int, server_block: str, http_extra: str = ""
) -> str:
    """A self-contained nginx.conf: every path inside `prefix`, no include of the system config."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# generated by bench/systems.py
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{temp}
{http_extra}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
{server_block}
    }}
}}
"""


def _return_body_block() -> str:
    body = BODY.decode()
    assert "'" not in body and "\\" not in body
    return f"""        location / {{
            default_type application/json;
            return 200 '{body}';
        }}"""


def _proxy_block(big: bool = False) -> str:
    """nginx as a reverse proxy; with `big` (the 10 MB scenarios), a 20 MiB body limit, request
    bodies streamed as they arrive (not spooled to a temp file first) and answers relayed through
    its memory buffers only (no temp file): the same streaming job as Bastion's. Its buffers are
    256 KiB, like Bastion's (uvloop reads up to 256 KiB at a time; its write buffer pauses the
    other side at 256 KiB): with nginx's defaults (4 KiB proxy buffers, 16 KiB body buffer) the
    download measured half as fast (bench/README.md)."""
    extra = (
        f"""
            client_max_body_size {BIG_MAX_BODY // 2**20}m;
            client_body_buffer_size {NGINX_BIG_BUFFER};
            proxy_request_buffering off;
            proxy_buffer_size {NGINX_BIG_BUFFER};
            proxy_buffers 4 {NGINX_BIG_BUFFER};
            proxy_max_temp_file_size 0;"""
        if big
        else ""
    )
    return f"""        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";{extra}
        }}"""


def big_payload() -> bytes:
    """The 10 MiB file the upstream serves on BIG_PATH."""
    return bytes(range(256)) * (BIG_SIZE // 256)


def upload_payload() -> bytes:
    """The 10 MiB upload body (what upload.lua sends: BIG_SIZE times "x")."""
    return b"x" * BIG_SIZE


def upload_read(body: bytes) -> int:
    """The request length the upstream's upload location read (head + body), from its answer."""
    try:
        return int(body.strip() or b"0")
    except ValueError:
        return 0


def big_upstream_blocks(prefix: Path, port: int) -> str:
    """The upstream's locations of the 10 MB scenarios.

    `GET /big`: BIG_SIZE bytes from `prefix`/big.bin with sendfile. `POST /upload`: nginx only
    reads a body for a module that asks for it (`return` discards it, and may answer before the
    body has arrived), so the location proxies: proxy_pass reads the whole body into memory
    (client_body_buffer_size 16m, no temp file) before it connects, then sends a body-less request
    to this same server's `return 200` sink, passing `$request_length` (head + body bytes read),
    which the sink answers as its body: proof that the whole body was read.
    """
    mib = 2**20
    return f"""        location = {BIG_PATH} {{
            alias {prefix}/{BIG_FILE};
            default_type application/octet-stream;
            sendfile on;
        }}
        location = {UPLOAD_PATH} {{
            client_max_body_size {BIG_MAX_BODY // mib}m;
            client_body_buffer_size 16m;
            proxy_pass http://sink{UPLOAD_SINK_PATH};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Request-Length $request_length;
        }}
        location = {UPLOAD_SINK_PATH} {{
            allow 127.0.0.1;
            deny all;
            default_type text/plain;
            return 200 "$http_x_request_length\\n";
        }}"""


def sink_upstream(port: int) -> str:
    """The keep-alive pool of the upstream's upload location to its own sink."""
    return f"    upstream sink {{\n        server 127.0.0.1:{port};\n        keepalive 16;\n    }}"


def start_nginx(
    workdir: Path,
    name: str,
    workers: int,
    cpus: str | None,
    upstream_port: int | None = None,
    big: bool = False,
) -> Server:
    """nginx answering BODY itself, or proxying to `upstream_port` when it is given; with `big`,
    the 10 MB scenarios' locations (the upstream) or body limit and streaming (the proxy)."""
    nginx = find_nginx()
    if nginx is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    prefix = workdir / name
    (prefix / "tmp").mkdir(parents=True)
    prefix.chmod(0o755)  # workers run as `nobody` when the master is root
    port = free_port()
    if upstream_port is None and big:
        (prefix / BIG_FILE).write_bytes(big_payload())
        block = f"{_return_body_block()}\n{big_upstream_blocks(prefix, port)}"
        conf = nginx_conf(prefix, port, workers, block, http_extra=sink_upstream(port))
    elif upstream_port is None:
        conf = nginx_conf(prefix, port, workers, _return_body_block())
    else:
        upstream = (
            f"    upstream backend {{\n        server 127.0.0.1:{upstream_port};\n"
            f"        keepalive {NGINX_UPSTREAM_KEEPALIVE};\n    }}"
        )
        conf = nginx_conf(prefix, port, workers, _proxy_block(big), http_extra=upstream)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    command = [
        *pinned(cpus),
        nginx,
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-c",
        str(conf_path),
    ]
    return _started(spawn(name, command, prefix, port), ready=None)


# --- Bastion -----------------------------------------------------------------------------------


def oauth_plugin() -> dict[str, object]:
    """The oauth plugin on every route (`global_auth`), with the benchmark's one consumer."""
    consumer = {"name": "bench", "client_id": OAUTH_CLIENT_ID, "client_secret": OAUTH_CLIENT_SECRET}
    return {"oauth": {"global_auth": True, "consumers": [consumer]}}


def upstream_oauth_plugin(idp_port: int, eagerly_expire: int | None = None) -> dict[str, object]:
    """The upstream-oauth plugin on every route (its instance config), fetching from the test IdP
    with client_secret_post; `eagerly_expire` None keeps the plugin's default (5 s)."""
    config: dict[str, object] = {
        "oauth": {
            "token_endpoint": f"http://127.0.0.1:{idp_port}/token",
            "client_id": IDP_CLIENT_ID,
            "client_secret": IDP_CLIENT_SECRET,
        }
    }
    if eagerly_expire is not None:
        config["cache"] = {"eagerly_expire": eagerly_expire}
    return {"upstream-oauth": config}


def bastion_config(
    port: int,
    upstream_port: int,
    access_log: bool,
    store: Path | None = None,
    plugins: dict[str, object] | None = None,
    max_request_body: int | None = None,
) -> dict[str, object]:
    """One service, one catch-all route; with `plugins`, those plugins and `store` (a SQLite
    file) as the gateway's store; with `max_request_body`, the route's own body limit."""
    route: dict[str, object] = {"name": "all", "path": "/", "service": "upstream"}
    if max_request_body is not None:
        route["limits"] = {"max_request_body": max_request_body}
    config: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "access_log": access_log,
        "services": [{"name": "upstream", "url": f"http://127.0.0.1:{upstream_port}"}],
        "routes": [route],
    }
    if store is not None:
        config["store"] = f"sqlite:///{store}"
    if plugins:
        config["plugins"] = plugins
    return config


def start_bastion(
    workdir: Path,
    name: str,
    workers: int,
    cpus: str | None,
    upstream_port: int,
    access_log: bool,
    plugins: dict[str, object] | None = None,
    max_request_body: int | None = None,
    source: bool = False,
) -> Server:
    """`bastion run -c CONFIG --workers N` in its own temp dir; ready when /healthz answers 200.
    `source`: the hot path runs from its Python source, not its mypyc build (gateway/hot_path.py).

    With `plugins` (oauth_plugin(), upstream_oauth_plugin()), the config has them and its store
    is a SQLite file in that dir; `max_request_body` is the route's body limit (the upload).
    """
    cwd = workdir / name
    cwd.mkdir(parents=True)
    port = free_port()
    config_path = cwd / "bastion.yaml"
    store = cwd / "bench.db" if plugins else None
    config = bastion_config(port, upstream_port, access_log, store, plugins, max_request_body)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        *pinned(cpus),
        str(bastion_executable()),
        "run",
        "-c",
        str(config_path),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "BASTION_PURE_PYTHON": "1" if source else "0"}
    return _started(spawn(name, command, cwd, port, env), ready="/healthz")


# --- oauth tokens ------------------------------------------------------------------------------


def issue_token(server: Server) -> str:
    """One access token from the token endpoint of a Bastion with the oauth plugin."""
    try:
        status, body = fetch(server.port, TOKEN_PATH)
    except OSError as exc:
        raise server.fail(f"token request failed: {exc}") from None
    if status != 200:
        raise server.fail(f"token request returned {status} {body[:200]!r}, expected 200")
    try:
        return str(json.loads(body)["access_token"])
    except (ValueError, KeyError) as exc:
        raise server.fail(f"token answer without access_token: {body[:200]!r}") from exc


def forge(token: str) -> str:
    """The same header and claims signed with another key: a well-formed, wrongly signed JWT."""
    signing_input = token.rsplit(".", 1)[0]
    key = b"not-" + OAUTH_CLIENT_SECRET.encode()
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


# --- the test IdP (upstream-oauth) ------------------------------------------------------------


def start_idp(workdir: Path, cpus: str | None) -> Server:
    """tests/e2e/idp_app.py as a process on a free port; ready when GET /control answers 200."""
    cwd = workdir / "idp"
    cwd.mkdir(parents=True)
    port = free_port()
    command = [*pinned(cpus), sys.executable, str(IDP_APP), "--port", str(port)]
    return _started(spawn("idp", command, cwd, port), ready="/control")


def _idp_call(idp: Server, method: str, path: str, data: object = None) -> dict[str, Any]:
    body = None if data is None else json.dumps(data).encode()
    headers = ("Content-Type: application/json",) if body is not None else ()
    try:
        status, answer = fetch(idp.port, path, headers, method=method, body=body)
    except OSError as exc:
        raise idp.fail(f"{method} {path} failed: {exc}") from None
    if status != 200:
        raise idp.fail(f"{method} {path} returned {status} {answer[:200]!r}")
    result: dict[str, Any] = json.loads(answer)
    return result


def idp_set_expires_in(idp: Server, seconds: int) -> None:
    """The `expires_in` of every token the IdP issues from now on."""
    _idp_call(idp, "POST", "/control", {"expires_in": seconds})


def idp_token_requests(idp: Server) -> int:
    """How many requests reached the IdP's /token since it started (whatever their outcome)."""
    return int(_idp_call(idp, "GET", "/stats")["token_requests"])


# --- Python upstream (quick mode without nginx) ------------------------------------------------


def start_pyupstream(workdir: Path, name: str, cpus: str | None) -> Server:
    cwd = workdir / name
    cwd.mkdir(parents=True)
    port = free_port()
    command = [*pinned(cpus), sys.executable, str(HERE / "pyupstream.py"), "--port", str(port)]
    return _started(spawn(name, command, cwd, port), ready=None)


# --- Express Gateway (issue 7) -----------------------------------------------------------------

EG_VERSION = "1.16.11"  # the last release; it needs node 20 (crypto.createCipher is gone in 22)
EG_NODE_MAJOR = 20
EG_CACHE_ENV = "BASTION_BENCH_EG_DIR"  # bench/run sets it to the npm --prefix folder
EG_JWT_SECRET = "bench-eg-jwt-secret-0123456789abcdef"
EG_JWT_ISSUER = "express-gateway"
EG_JWT_AUDIENCE = "bench"
EG_JWT_SUBJECT = "bench"  # static `sub` of EG's JWTs: without it /oauth2/token answers 500
EG_TOKEN_PATH = "/oauth2/token"
EG_FORM = "application/x-www-form-urlencoded"
EG_UNAUTHORIZED_BODY = b"Unauthorized"  # EG's 401 (express sendStatus)
EG_USER = {"username": "bench", "firstname": "Bench", "lastname": "User"}
EG_APP = {"name": "bench-app", "redirectUri": "http://127.0.0.1/callback"}


def eg_prefix() -> Path:
    """The `npm install --prefix` folder of express-gateway, outside the git tree."""
    default = Path.home() / ".cache" / "bastion-bench" / f"express-gateway-{EG_VERSION}"
    return Path(os.environ.get(EG_CACHE_ENV) or default)


def eg_package() -> Path:
    return eg_prefix() / "node_modules" / "express-gateway"


def eg_missing() -> str | None:
    """Why Express Gateway cannot run here (not installed, wrong version, no node 20), or None."""
    package = eg_package() / "package.json"
    if not package.exists():
        return f"express-gateway {EG_VERSION} is not installed in {eg_prefix()} (bench/run does it)"
    version = json.loads(package.read_text()).get("version")
    if version != EG_VERSION:
        return f"{package} is express-gateway {version}, not {EG_VERSION}"
    node = node_version()
    if node is None:
        return "node is not installed (express-gateway needs node 20)"
    if not node.startswith(f"v{EG_NODE_MAJOR}."):
        return f"node {node}: express-gateway {EG_VERSION} needs node {EG_NODE_MAJOR}"
    return None


def node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def eg_system_config(jwt: bool) -> dict[str, object]:
    """system.config.yml: the in-memory emulated Redis (EG's default store); with `jwt`, JWT
    access tokens (HS256) with a static subject."""
    tokens: dict[str, object] = {"timeToExpiry": 7_200_000}
    if jwt:
        tokens.update(
            tokenType="jwt",
            secretOrPrivateKey=EG_JWT_SECRET,
            algorithm="HS256",
            issuer=EG_JWT_ISSUER,
            audience=EG_JWT_AUDIENCE,
            subject=EG_JWT_SUBJECT,
        )
    return {
        "db": {"redis": {"emulate": True, "namespace": "EG"}},
        "crypto": {"cipherKey": "bench-cipher-key", "algorithm": "aes256", "saltRounds": 10},
        "session": {"secret": "bench-session-secret", "resave": False, "saveUninitialized": False},
        "accessTokens": tokens,
        "refreshTokens": {"timeToExpiry": 7_200_000},
        "authorizationCodes": {"timeToExpiry": 300_000},
    }


def eg_gateway_config(
    port: int, admin_port: int, upstream_port: int, oauth2: bool
) -> dict[str, object]:
    """gateway.config.yml: 127.0.0.1 only, one catch-all pipeline proxying to the upstream; with
    `oauth2`, the oauth2 policy first, verifying EG's own JWTs (no credential lookup)."""
    proxy = {"proxy": [{"action": {"serviceEndpoint": "backend"}}]}
    jwt = {
        "issuer": EG_JWT_ISSUER,
        "audience": EG_JWT_AUDIENCE,
        "secretOrPublicKey": EG_JWT_SECRET,
        "algorithms": ["HS256"],
        "checkCredentialExistence": False,  # else it refuses its own JWTs
    }
    policies = [{"oauth2": [{"action": {"jwt": jwt}}]}, proxy] if oauth2 else [proxy]
    return {
        "http": {"port": port, "hostname": "127.0.0.1"},
        "admin": {"port": admin_port, "host": "127.0.0.1"},
        "apiEndpoints": {"api": {"host": "*"}},
        "serviceEndpoints": {"backend": {"url": f"http://127.0.0.1:{upstream_port}"}},
        "policies": ["proxy", "oauth2"] if oauth2 else ["proxy"],
        "pipelines": {"bench": {"apiEndpoints": ["api"], "policies": policies}},
    }


def write_eg_config(
    config_dir: Path, port: int, admin_port: int, upstream_port: int, oauth2: bool
) -> None:
    """The EG_CONFIG_DIR of one run: both YAML files and the models/ folder EG loads from it."""
    config_dir.mkdir(parents=True, exist_ok=True)
    system = eg_system_config(jwt=oauth2)
    gateway = eg_gateway_config(port, admin_port, upstream_port, oauth2)
    (config_dir / "system.config.yml").write_text(yaml.safe_dump(system, sort_keys=False))
    (config_dir / "gateway.config.yml").write_text(yaml.safe_dump(gateway, sort_keys=False))
    models = eg_package() / "lib" / "config" / "models"
    if models.is_dir():
        shutil.copytree(models, config_dir / "models", dirs_exist_ok=True)


@dataclass
class EgServer(Server):
    """Express Gateway: its gateway port (`port`) and its admin REST API port."""

    admin_port: int = 0


@dataclass(frozen=True)
class EgCredential:
    """The oauth2 credential of the benchmark's app: client_id (the app id) and its secret."""

    client_id: str
    client_secret: str

    def token_form(self) -> str:
        """The client_credentials request body of POST /oauth2/token."""
        return (
            f"grant_type=client_credentials&client_id={self.client_id}"
            f"&client_secret={self.client_secret}"
        )


def start_eg(
    workdir: Path, name: str, cpus: str | None, upstream_port: int, oauth2: bool
) -> EgServer:
    """`node lib/index.js` with EG_CONFIG_DIR = a fresh dir; ready when both ports listen."""
    missing = eg_missing()
    if missing:
        raise RuntimeError(missing)
    cwd = workdir / name
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    write_eg_config(cwd, port, admin_port, upstream_port, oauth2)
    node = shutil.which("node") or "node"
    command = [*pinned(cpus), node, str(eg_package() / "lib" / "index.js")]
    log_path = cwd / f"{name}.log"
    env = {**os.environ, "EG_CONFIG_DIR": str(cwd), "NODE_ENV": "production"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = EgServer(name, proc, port, log_path, admin_port)
    admin = Server(f"{name} admin", proc, admin_port, log_path)
    try:
        admin.wait_listening()
    except BaseException:
        server.stop()
        raise
    return _started(server, ready=None)  # type: ignore[return-value]


def _eg_admin(server: EgServer, path: str, data: Mapping[str, object]) -> dict[str, Any]:
    body = json.dumps(data).encode()
    headers = ("Content-Type: application/json",)
    try:
        status, answer = fetch(server.admin_port, path, headers, method="POST", body=body)
    except OSError as exc:
        raise server.fail(f"admin POST {path} failed: {exc}") from None
    if status != 200:
        raise server.fail(f"admin POST {path} returned {status} {answer[:200]!r}")
    result: dict[str, Any] = json.loads(answer)
    return result


def eg_provision(server: EgServer) -> EgCredential:
    """A user, an app of that user and the app's oauth2 credential, with EG's admin REST API."""
    user = _eg_admin(server, "/users", EG_USER)
    app = _eg_admin(server, "/apps", {**EG_APP, "userId": user["id"]})
    credential = {"consumerId": app["id"], "type": "oauth2", "credential": {}}
    created = _eg_admin(server, "/credentials", credential)
    return EgCredential(str(created["id"]), str(created["secret"]))


def eg_issue_token(server: Server, credential: EgCredential) -> str:
    """One access token from EG's POST /oauth2/token (client_credentials, secret in the body)."""
    headers = (f"Content-Type: {EG_FORM}",)
    body = credential.token_form().encode()
    try:
        status, answer = fetch(server.port, EG_TOKEN_PATH, headers, method="POST", body=body)
    except OSError as exc:
        raise server.fail(f"token request failed: {exc}") from None
    if status != 200:
        raise server.fail(f"token request returned {status} {answer[:200]!r}, expected 200")
    try:
        return str(json.loads(answer)["access_token"])
    except (ValueError, KeyError) as exc:
        raise server.fail(f"token answer without access_token: {answer[:200]!r}") from exc
