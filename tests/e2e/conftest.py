"""Fixtures for whole-process tests: a real upstream process and `bastion run` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.e2e.idp import idp, idp_server  # noqa: F401  (fixtures: a test IdP process)
from tests.e2e.oidc_provider import oidc_provider  # noqa: F401  (fixture: a real OpenID provider)
from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway, run_python

UPSTREAM_APP = Path(__file__).with_name("upstream_app.py")


@pytest.fixture(scope="session")
def upstream_port() -> Iterator[int]:
    """The test upstream (tests/e2e/upstream_app.py), one process for the whole session."""
    port = free_port()
    with run_python(UPSTREAM_APP, "--port", str(port), port=port):
        yield port


GatewayFactory = Callable[..., AbstractContextManager[Gateway]]


@pytest.fixture
def start_gateway(tmp_path: Path, upstream_port: int) -> GatewayFactory:
    """`with start_gateway(**config_overrides) as gw:` runs `bastion run` before the upstream."""

    def factory(
        *args: str, env: dict[str, str] | None = None, **overrides: object
    ) -> AbstractContextManager[Gateway]:
        config = gateway_config(upstream_port, free_port(), **overrides)
        return run_gateway(tmp_path, config, *args, env=env)

    return factory


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Iterator[Gateway]:
    """A gateway with the default config: one catch-all route to the test upstream."""
    with start_gateway() as gw:
        yield gw
