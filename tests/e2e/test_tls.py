"""TLS on the listener: top-level `tls: {cert, key}`."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import GatewayFactory


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_listener_proxies_and_sets_forwarded_proto(
    start_gateway: GatewayFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with start_gateway(tls={"cert": str(cert), "key": str(key)}) as gw:
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=10, context=context)
        conn.request("GET", "/echo/tls")
        response = conn.getresponse()
        assert response.status == 200
        echoed = json.loads(response.read())
        headers = {k.lower(): v for k, v in echoed["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        conn.request("GET", "/healthz")  # keep-alive over TLS
        assert conn.getresponse().status == 200
        conn.close()


def test_plain_http_to_a_tls_listener_is_refused_and_the_gateway_keeps_serving(
    start_gateway: GatewayFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with start_gateway(tls={"cert": str(cert), "key": str(key)}) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("GET", "/echo/plain")
            conn.getresponse().read()
        conn.close()
        context = ssl.create_default_context(cafile=str(cert))
        tls = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=10, context=context)
        tls.request("GET", "/echo/after")
        assert tls.getresponse().status == 200
        tls.close()
