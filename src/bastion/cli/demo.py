"""`bastion demo`: start a gateway on the embedded default with a demo upstream, print curls."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

DEMO_DIR = ".bastion-demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


DEMO_CLIENT = "demo-client"


def demo_config(port: int, upstream_port: int, folder: Path, secret: str) -> dict[str, object]:
    return {
        "listen": f"127.0.0.1:{port}",
        "store": f"sqlite:///{folder.resolve() / 'bastion.db'}",
        "services": [{"name": "demo-upstream", "url": f"http://127.0.0.1:{upstream_port}"}],
        "routes": [
            {
                "name": "hello",
                "path": "/hello",
                "service": "demo-upstream",
                "plugins": {
                    "headers": {
                        "request": {"set": {"X-Demo": "set-by-bastion"}},
                        "response": {"set": {"X-Gateway": "bastion"}},
                    }
                },
            },
            {
                "name": "api",
                "path": "/api",
                "service": "demo-upstream",
                "plugins": {"oauth": {"allow": ["demo-consumer"]}},  # tokens needed here
            },
            {"name": "everything-else", "path": "/", "service": "demo-upstream"},
        ],
        "plugins": {
            "oauth": {
                "global_auth": False,
                "consumers": [
                    {"name": "demo-consumer", "client_id": DEMO_CLIENT, "client_secret": secret}
                ],
            }
        },
    }


@click.command()
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port of the demo gateway on 127.0.0.1.",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEMO_DIR,
    show_default=True,
    help="Folder for the demo's config and SQLite store.",
)
def demo(port: int, folder: Path) -> None:
    """Start a ready-to-try gateway with a built-in demo upstream and print what to try."""
    from bastion.config.loader import load_config
    from bastion.gateway.server import run_worker

    if not _port_free(port):
        raise click.UsageError(f"port {port} is in use on 127.0.0.1; pick another with --port")
    folder.mkdir(parents=True, exist_ok=True)
    upstream_port = _free_port()
    config_path = (folder / "bastion.yaml").resolve()
    secret = secrets.token_urlsafe(32)  # a new one each start, shown below
    config_path.write_text(
        yaml.safe_dump(demo_config(port, upstream_port, folder, secret), sort_keys=False)
    )
    config_path.chmod(0o600)  # it holds the client secret
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bastion.demo.upstream", "--port", str(upstream_port)],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", upstream_port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        token_url = (
            f"{base}/api/oauth2/token?grant_type=client_credentials"
            f"&client_id={DEMO_CLIENT}&client_secret={secret}"
        )
        click.echo(
            f"Bastion demo on {base} (config: {config_path})\n"
            "Try:\n"
            f"  curl -i {base}/hello         # the headers plugin: see X-Demo, X-Gateway\n"
            f"  curl -i {base}/anything?x=1  # the catch-all route to the demo upstream\n"
            f"  curl -i {base}/api/items     # the oauth plugin: 401 without a token\n"
            "  # get a token (client credentials), then call the protected route with it:\n"
            f"  curl -s '{token_url}'\n"
            f"  TOKEN=$(curl -s '{token_url}' | python3 -c "
            "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
            f'  curl -i {base}/api/items -H "Authorization: Bearer $TOKEN"'
            "  # see X-Mse-Consumer\n"
            f"  curl -i {base}/healthz       # health\n"
            "Stop with Ctrl-C.",
            err=True,
        )
        code = run_worker(config_path, load_config(config_path), serve_admin=True, reuse_port=False)
    finally:
        upstream.terminate()
        upstream.wait(5)
    sys.exit(code)
