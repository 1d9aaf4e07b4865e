"""Top-level configuration models (SPEC §2): listeners, admin, store, limits, services, routes."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bastion.config.fields import ByteSize, DomainPattern, HeaderLimit, ListenAddress, Seconds
from bastion.gateway.routing import BadPath, normalize_path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '.', '_' or '-' (at most 128)"
        )
    return value


class Tls(Model):
    cert: str = Field(description="PEM certificate chain file for the listener.")
    key: str = Field(description="PEM private key file for the certificate.")


class Admin(Model):
    listen: ListenAddress = Field(description="Address of the admin API and /metrics.")
    token: str = Field(min_length=16, description="Bearer token the admin API requires.")


class Health(Model):
    path_prefix: str | None = Field(
        default="/", description="Where /healthz and /readyz live on the main listener; null: off."
    )

    @field_validator("path_prefix")
    @classmethod
    def _starts_with_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class Limits(Model):
    max_request_body: ByteSize = Field(default=104_857_600, description="Bytes; over it → 413.")
    max_header_size: HeaderLimit = Field(
        default=65_536, description="Bytes of request line and headers; over it → 431."
    )
    max_header_count: int = Field(default=100, ge=1, le=10_000, description="Over it → 431.")
    client_timeout: Seconds = Field(
        default=60, description="Seconds a client may stay silent in the middle of a request."
    )
    header_timeout: Seconds = Field(
        default=10, description="Seconds a client has to send a whole request head (slowloris)."
    )
    keepalive_timeout: Seconds = Field(
        default=75, description="Seconds an idle keep-alive client connection is kept (nginx: 75)."
    )
    drain_timeout: Seconds = Field(
        default=30, description="On SIGTERM, seconds in-flight requests get to finish."
    )


class RouteLimits(Model):
    max_request_body: ByteSize = Field(description="This route's own body limit in bytes.")


class Service(Model):
    name: str
    url: str = Field(description="http:// or https:// base URL of the upstream.")
    connect_timeout: Seconds = Field(default=5, description="Refused or unreachable → 502.")
    timeout: Seconds = Field(
        default=60, description="Seconds to wait for the response head or between body reads → 504."
    )
    idle_timeout: Seconds = Field(default=60, description="Idle pooled connections close after it.")
    max_idle: int = Field(
        default=256, ge=0, description="Idle keep-alive connections kept per worker."
    )
    tls_verify: bool = Field(default=True, description="Verify the upstream's certificate (https).")

    _check = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: the scheme must be http or https")
        if not parts.hostname:
            raise ValueError(f"{value!r} has no host")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: a service URL has no query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value


class Route(Model):
    name: str
    domains: list[DomainPattern] = Field(default_factory=list, description="Omitted: any host.")
    path_type: Literal["prefix", "exact", "regex"] = "prefix"
    path: str = Field(default="/", description="Prefix, exact path or regex (see path_type).")
    service: str
    preserve_host: bool = Field(
        default=False, description="Send the client's Host upstream instead of the service's."
    )
    limits: RouteLimits | None = None
    plugins: dict[str, Any] = Field(
        default_factory=dict, description="Same as a _match_route_ rule."
    )

    _check = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("path_type") == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
            return value
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        try:
            canonical = normalize_path(value)
        except BadPath as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        if canonical != value:
            # requests are matched on their normalized path, so this one could never match
            raise ValueError(f"{value!r} is not in normalized form; write {canonical!r}")
        return value


class Config(Model):
    listen: ListenAddress | list[ListenAddress] = "127.0.0.1:8080"
    tls: Tls | None = None
    admin: Admin | None = None
    store: str = Field(default="sqlite:///bastion.db", description="sqlite:///PATH or redis://…")
    health: Health = Field(default_factory=Health)
    limits: Limits = Field(default_factory=Limits)
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or CIDRs whose X-Forwarded-* are believed."
    )
    access_log: bool = Field(default=True, description="One JSON line per request on stdout.")
    watch: bool = Field(default=False, description="Reload when the file changes.")
    services: list[Service] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    plugins: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("sqlite", "redis", "rediss", "redis+sentinel", "redis+cluster"):
            raise ValueError(
                f"{value!r}: expected sqlite:///PATH, redis://, rediss://, redis+sentinel:// "
                "or redis+cluster://"
            )
        return value

    @property
    def listen_addresses(self) -> list[str]:
        return [self.listen] if isinstance(self.listen, str) else list(self.listen)
