"""idp/httpx_module.py: httpx without its command-line client (click, pygments) in Bastion's
processes, and every product import of httpx made through it. Each case is a fresh interpreter:
a real token request over loopback, then what the process has imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bastion

PROBE = """
import asyncio, json, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

if sys.argv[1] == "httpx-first":
    import httpx
from bastion.idp.httpx_module import httpx
from bastion.idp.client_auth import ClientCredentials
from bastion.idp.token_client import TokenRequest, fetch_token

class IdP(BaseHTTPRequestHandler):
    def do_POST(self):
        form = self.rfile.read(int(self.headers["Content-Length"])).decode()
        body = json.dumps({"access_token": "tok:" + form, "expires_in": 60}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), IdP)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"http://127.0.0.1:{server.server_address[1]}/token"
credentials = ClientCredentials("client_secret_post", "gw", "s3cret")

async def main():
    async with httpx.AsyncClient() as client:
        request = TokenRequest(endpoint, (("grant_type", "client_credentials"),), (), credentials)
        return await fetch_token(client, request)

print("TOKEN", asyncio.run(main()).access_token)
server.shutdown()
print("CLICK", "click" in sys.modules)
print("CLI_ENTRY", "httpx._main" in sys.modules)
try:
    import httpx._main
    print("CLI_IMPORT", "ok")
except ImportError as exc:
    print("CLI_IMPORT", exc)
"""


def probe(order: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, order], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_token_requests_work_without_the_cli_and_its_imports() -> None:
    seen = probe("bastion-first")
    assert seen["TOKEN"] == "tok:grant_type=client_credentials&client_id=gw&client_secret=s3cret"
    assert seen["CLICK"] == "False"
    assert seen["CLI_ENTRY"] == "False"  # the block lasted for httpx's own import only
    assert "halted" not in seen["CLI_IMPORT"]  # a later import of it meets no None entry


def test_httpx_imported_before_is_left_as_it_is() -> None:
    seen = probe("httpx-first")
    assert seen["TOKEN"].startswith("tok:grant_type=client_credentials")
    assert seen["CLICK"] == "True"  # httpx's own import brings click: what the module spares


def test_the_product_imports_httpx_only_through_the_module() -> None:
    """A plain `import httpx` at run time would bring the CLI back; type-only imports are free."""
    package = Path(bastion.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        if path.name == "httpx_module.py":
            continue
        tree = ast.parse(path.read_text())
        type_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
            for node in ast.walk(block)
        }
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if id(node) not in type_only and any(n.split(".")[0] == "httpx" for n in names):
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []
