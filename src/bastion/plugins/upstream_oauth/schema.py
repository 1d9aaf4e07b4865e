"""Config of `upstream-oauth`: Kong's field groups, names and defaults (reference 004, SPEC §7).

A Kong plugin's `config:` block moves under `plugins.upstream-oauth` unchanged. Bastion's
differences: `client.ssl_verify` is true by default, `client.auth_method` also takes
`private_key_jwt` (with `private_key`, `kid`, `private_key_jwt_alg`), and `cache.redis` is a store
URL (omitted: the gateway's own store, which must then be Redis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bastion.config.fields import HeaderName
from bastion.config.model import Model
from bastion.errors import ConfigError
from bastion.store.url import parse_store_url


def _header_value(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what}: a header value cannot contain CR, LF or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: a header value must be Latin-1 text") from None
    return value


class OAuthSettings(Model):
    """`oauth`: what is asked of the IdP; its hash is the cache key (identical settings share)."""

    token_endpoint: str = Field(description="The IdP's token endpoint (http or https URL).")
    grant_type: Literal["client_credentials", "password"] = "client_credentials"
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid"], description="Space-joined.")
    audience: list[str] = Field(default_factory=list, description="Space-joined; [] omitted.")
    token_post_args: dict[str, str] = Field(default_factory=dict)
    token_headers: dict[HeaderName, str] = Field(default_factory=dict)

    @field_validator("token_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("token_headers")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _header_value(text, name)
        return value

    @model_validator(mode="after")
    def _grant_fields(self) -> OAuthSettings:
        if self.grant_type == "password" and (not self.username or self.password is None):
            raise ValueError("grant_type password needs oauth.username and oauth.password")
        return self


class ClientSettings(Model):
    """`client`: how the gateway talks to the IdP."""

    auth_method: Literal[
        "client_secret_post", "client_secret_basic", "client_secret_jwt", "private_key_jwt", "none"
    ] = "client_secret_post"
    client_secret_jwt_alg: Literal["HS512", "HS256"] = "HS512"
    private_key: str | None = Field(default=None, description="PEM text, or @/path/to/key.pem.")
    kid: str | None = None
    private_key_jwt_alg: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    timeout: int = Field(default=10000, ge=1, le=600_000, description="Milliseconds.")
    ssl_verify: bool = Field(default=True, description="Verify the IdP's TLS certificate.")
    ssl_ca_file: str | None = Field(default=None, description="A CA bundle for the IdP (Bastion).")
    http_proxy: str | None = None
    https_proxy: str | None = None
    http_proxy_authorization: str | None = None
    https_proxy_authorization: str | None = None
    no_proxy: str | None = None
    http_version: float = Field(default=1.1, description="Accepted for Kong configs; 1.1.")
    keep_alive: bool = True

    @field_validator("private_key")
    @classmethod
    def _read_file(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("@"):
            try:
                return Path(value[1:]).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read {value[1:]}: {exc.strerror}") from None
        return value


class MemoryCache(Model):
    dictionary_name: str = Field(default="kong_db_cache", description="Kong's; not used here.")


class CacheSettings(Model):
    strategy: Literal["memory", "redis"] = "memory"
    memory: MemoryCache = Field(default_factory=MemoryCache)
    redis: str | None = Field(
        default=None, description="A redis:// store URL; omitted: the gateway's store."
    )
    eagerly_expire: int = Field(default=5, ge=0, description="Seconds before expires_in.")
    default_ttl: int = Field(default=3600, ge=1, description="When the IdP sends no expires_in.")

    @field_validator("redis", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if isinstance(value, dict):
            raise ValueError(
                "give a store URL (redis://[:password@]host:port/db, redis+sentinel://..., "
                "redis+cluster://...) instead of Kong's redis object; see docs/plugins/"
                "upstream-oauth.md"
            )
        if isinstance(value, str):
            try:
                parsed = parse_store_url(value, "cache.redis")
            except ConfigError as exc:
                raise ValueError(exc.problems[0][1]) from None
            if parsed.backend != "redis":
                raise ValueError("must be a Redis URL")
        return value


_TEMPLATE = '{ "code": "{{status}}", "message": "{{message}}" }'


class BehaviorSettings(Model):
    upstream_access_token_header_name: HeaderName = "Authorization"
    idp_error_response_status_code: int = Field(default=502, ge=500, le=599)
    idp_error_response_content_type: str = "application/json; charset=utf-8"
    idp_error_response_message: str = "Failed to authenticate request to upstream"
    idp_error_response_body_template: str = _TEMPLATE
    purge_token_on_upstream_status_codes: list[int] = Field(default_factory=lambda: [401])

    @field_validator("purge_token_on_upstream_status_codes")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status")
        return value

    @field_validator("idp_error_response_content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        return _header_value(value, "the content type")


class UpstreamOAuthConfig(Model):
    oauth: OAuthSettings
    client: ClientSettings = Field(default_factory=ClientSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    behavior: BehaviorSettings = Field(default_factory=BehaviorSettings)

    @model_validator(mode="after")
    def _client_auth(self) -> UpstreamOAuthConfig:
        method, oauth = self.client.auth_method, self.oauth
        if oauth is None:
            return self  # an instance config that only rules use (UpstreamOAuthInstance)
        if method != "none" and not oauth.client_id:
            raise ValueError(f"client.auth_method {method} needs oauth.client_id")
        if method.startswith("client_secret") and not oauth.client_secret:
            raise ValueError(f"client.auth_method {method} needs oauth.client_secret")
        if method == "private_key_jwt" and not self.client.private_key:
            raise ValueError("client.auth_method private_key_jwt needs client.private_key")
        return self


class UpstreamOAuthInstance(UpstreamOAuthConfig):
    """The instance config (`plugins.upstream-oauth`): `oauth` may be left to the rules, as when a
    Kong plugin sits on routes only; it is required where the instance config applies."""

    oauth: OAuthSettings | None = None  # type: ignore[assignment]
