"""Admin API app: health, Prometheus metrics and reload; every route but health needs the token."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Iterator
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion import __version__
from bastion.ops.exposition import render
from bastion.store.base import StoreUnavailable

_OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class Controller(Protocol):
    """What the admin API drives: a single worker, or the supervisor of several."""

    def metrics_snapshot(self) -> dict[str, Any]: ...

    def readiness(self) -> str:
        """`ok`, or why not ready: `draining`, `store_unavailable`."""
        ...

    async def reload(self) -> list[str]:
        """Reload the config file; the problems that refused it, or [] when it took effect."""
        ...

    async def revoke_tokens(self, jtis: list[str]) -> int:
        """Revoke access tokens by jti in the store (ValueError without the oauth plugin)."""
        ...

    async def purge_upstream_tokens(self, route: str | None) -> int:
        """Purge cached upstream-oauth tokens (ValueError: no plugin, unknown route)."""
        ...


class BearerTokenGuard:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "unauthorized", "message": "a valid admin bearer token is required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="bastion-admin"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Status(BaseModel):
    status: str


class Revoked(BaseModel):
    revoked: str


class PurgeRequest(BaseModel):
    route: str | None = None

    model_config = {"extra": "forbid"}


class Purged(BaseModel):
    purged: int
    route: str | None


class Problem(BaseModel):
    error: str
    message: str


class InvalidConfig(BaseModel):
    error: str
    problems: list[str]


def create_app(controller: Controller, token: str) -> ASGIApp:
    app = FastAPI(title="Bastion admin API", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/healthz", response_model=Status)
    async def healthz() -> Status:
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, responses={503: {"model": Status}})
    async def readyz() -> Any:
        status = controller.readiness()
        if status == "ok":
            return Status(status="ok")
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(
            render(controller.metrics_snapshot()), media_type="text/plain; version=0.0.4"
        )

    @app.post("/reload", response_model=Status, responses={400: {"model": InvalidConfig}})
    async def reload() -> Any:
        problems = await controller.reload()
        if problems:
            return JSONResponse({"error": "invalid_config", "problems": problems}, status_code=400)
        return Status(status="reloaded")

    @app.delete(
        "/tokens/{jti}",
        response_model=Revoked,
        responses={409: {"model": Problem}, 503: {"model": Problem}},
    )
    async def revoke_token(jti: str) -> Any:
        """Revoke an access token by its jti; every node refuses it within a second."""
        try:
            await controller.revoke_tokens([jti])
        except ValueError as exc:
            return JSONResponse({"error": "no_oauth", "message": str(exc)}, status_code=409)
        except StoreUnavailable as exc:
            return JSONResponse(
                {"error": "store_unavailable", "message": str(exc)}, status_code=503
            )
        return Revoked(revoked=jti)

    @app.post(
        "/upstream-oauth/purge",
        response_model=Purged,
        responses={404: {"model": Problem}, 503: {"model": Problem}},
    )
    async def purge_upstream_tokens(request: PurgeRequest | None = None) -> Any:
        """Drop cached upstream tokens, of one route or all, on every node."""
        route = request.route if request is not None else None
        try:
            count = await controller.purge_upstream_tokens(route)
        except ValueError as exc:
            return JSONResponse({"error": "not_found", "message": str(exc)}, status_code=404)
        except StoreUnavailable as exc:
            return JSONResponse(
                {"error": "store_unavailable", "message": str(exc)}, status_code=503
            )
        return Purged(purged=count, route=route)

    return BearerTokenGuard(app, token)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn in our event loop: the gateway owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def admin_server(app: ASGIApp) -> _EmbeddedServer:
    """uvicorn for `app`, to be served on a socket the caller bound."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
        http="h11",
        ws="none",
    )
    return _EmbeddedServer(config)
