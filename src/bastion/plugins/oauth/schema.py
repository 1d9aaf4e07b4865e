"""Config of the `oauth` plugin: the fields of reference 000/001 verbatim, and Bastion's opt-ins.

An instance config holds the consumers and the token settings. A rule (`_rules_` entry or a
route's `plugins.oauth`) either narrows the instance config (`allow`, `required_scopes`) or, with
`consumers` of its own, is a config of its own (reference 000 "Route-scoped tokens"); the fields a
rule does not set come from the instance config. Cross-field problems are found by
`scope_problems`, with paths relative to the section they are in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from bastion.config.fields import HeaderName
from bastion.config.model import Model

if TYPE_CHECKING:
    from bastion.config.model import Config


class Consumer(Model):
    name: str = Field(min_length=1, description="Unique; sent upstream as X-Mse-Consumer.")
    client_id: str = Field(min_length=1, description="OAuth 2.0 client identifier.")
    client_secret: str = Field(min_length=1, description="OAuth 2.0 client secret.")
    scopes: list[str] | None = Field(
        default=None,
        description="Scopes this consumer may ask for (Bastion); omitted: any, as Higress.",
    )

    @field_validator("name", "client_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 0x21 or c == "\x7f" for c in value) or not value.isascii():
            raise ValueError("must be printable ASCII without spaces (it goes in a header)")
        return value


class Signing(Model):
    """Gateway-held keys (SPEC §11): tokens signed by Bastion's own key, published as JWKS."""

    alg: Literal["RS256", "ES256", "EdDSA"] = Field(description="Signature algorithm.")


class Lockout(Model):
    """Failed client authentications allowed per client id and per address (SPEC §4)."""

    max_failures: int = Field(default=10, ge=1, description="Failures before a lockout.")
    window: float = Field(default=60, gt=0, le=86400, description="Seconds a count lasts.")


class OAuthFields(Model):
    """Fields valid in the instance config and in a rule."""

    consumers: list[Consumer] | None = Field(
        default=None, description="Consumers that may get tokens (reference 000, required)."
    )
    issuer: str = Field(default="Higress-Gateway", min_length=1, description="The iss claim.")
    auth_path: str = Field(
        default="/oauth2/token", min_length=1, description="Path suffix of the token endpoint."
    )
    global_credentials: bool = Field(
        default=True, description="false: a token is valid only on the route that issued it."
    )
    auth_header_name: HeaderName | None = Field(
        default=None, description="Header holding the token (default Authorization)."
    )
    auth_header: HeaderName | None = Field(
        default=None, description="The name Higress's code reads for auth_header_name."
    )
    token_ttl: int = Field(default=7200, ge=1, le=31_536_000, description="Token lifetime, s.")
    clock_skew_seconds: int = Field(default=60, ge=0, le=3600, description="Leeway on exp/iat.")
    keep_token: bool = Field(default=True, description="false: strip the token upstream.")
    signing: Signing | None = Field(
        default=None, description="Gateway-held keys (Bastion); omitted: HS256 per consumer."
    )
    rfc_errors: bool = Field(
        default=False, description="RFC 6749 JSON errors on the token endpoint for every client."
    )
    lockout: Lockout = Field(default_factory=Lockout, description="Failed-secret limit.")
    required_scopes: list[str] | None = Field(
        default=None, description="Scopes a token must carry here (needs `signing`)."
    )

    @field_validator("auth_path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        if any(c in value for c in "?# \t"):
            raise ValueError("must be a path without query, fragment or spaces")
        return value if value.startswith("/") else "/" + value  # as Higress does

    @field_validator("required_scopes")
    @classmethod
    def _scope_tokens(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must list at least one scope (omit it for none)")
            for scope in value:
                if not scope or any(c in scope for c in ' "\\') or not scope.isprintable():
                    raise ValueError(f"{scope!r} is not a scope token (RFC 6749 §3.3)")
        return value

    @property
    def header_name(self) -> str:
        return self.auth_header_name or self.auth_header or "Authorization"


class OAuthConfig(OAuthFields):
    """The instance-level config (`plugins.oauth`)."""

    global_auth: bool | None = Field(
        default=None,
        description="true: every route; false: routes and domains with a rule; unset: every "
        "route when there are no rules.",
    )
    allow: list[str] | None = Field(default=None, description="Rules only.")

    @field_validator("allow")
    @classmethod
    def _rules_only(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            raise ValueError(
                "allow belongs in a route or domain rule (_rules_ or a route's plugins), "
                "not in the instance config (reference 000: not configurable at instance level)"
            )
        return value


class OAuthRule(OAuthFields):
    """A route- or domain-level config."""

    allow: list[str] | None = Field(
        default=None, description="Consumer names allowed here (others get 403)."
    )


def merged(instance: OAuthConfig, rule: OAuthRule | None) -> OAuthRule:
    """The config that serves a scope: the rule's fields over the instance's."""
    base = {name: getattr(instance, name) for name in OAuthFields.model_fields}
    if rule is not None:
        base.update({name: getattr(rule, name) for name in rule.model_fields_set})
    return OAuthRule.model_construct(_fields_set=set(base), **base)


def scopes_of(config: Config) -> list[OAuthRule]:
    """The effective config of every scope of a validated Config's oauth plugin (instance and
    rules); empty when the config has no oauth plugin."""
    from bastion.plugins.rules import resolve_rules

    rules = resolve_rules(config).get("oauth")
    if rules is None:
        return []
    assert isinstance(rules.instance, OAuthConfig)
    scopes = [merged(rules.instance, None)]
    for rule in (*rules.route_rules.values(), *rules.domain_rules.values()):
        assert isinstance(rule, OAuthRule)
        scopes.append(merged(rules.instance, rule))
    return scopes


def scope_problems(section: OAuthFields, effective: OAuthRule) -> list[tuple[str, str]]:
    """Cross-field problems of one section (instance or rule), given the config it makes."""
    problems: list[tuple[str, str]] = []
    header, alias = section.auth_header_name, section.auth_header
    if header and alias and header.lower() != alias.lower():
        problems.append(("auth_header", "auth_header and auth_header_name name different headers"))
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    for i, consumer in enumerate(section.consumers or []):
        if consumer.name in names:
            problems.append(
                (f"consumers[{i}].name", f"duplicate consumer name {consumer.name!r} "
                 f"(also consumers[{names[consumer.name]}])")
            )  # fmt: skip
        names.setdefault(consumer.name, i)
        if consumer.client_id in ids:
            problems.append(
                (f"consumers[{i}].client_id", f"duplicate client_id {consumer.client_id!r} "
                 f"(also consumers[{ids[consumer.client_id]}])")
            )  # fmt: skip
        ids.setdefault(consumer.client_id, i)
    allow = getattr(section, "allow", None)
    if allow is not None and "consumers" in section.model_fields_set:
        problems.append(
            ("allow", "allow and consumers cannot be in the same rule (reference 000): define "
             "consumers in the instance config and narrow them here with allow")
        )  # fmt: skip
    elif allow is not None:
        known = {c.name for c in effective.consumers or []}
        for j, name in enumerate(allow):
            if name not in known:
                problems.append((f"allow[{j}]", f"unknown consumer {name!r}"))
    if effective.consumers is None:
        problems.append(("consumers", "required (here or in the instance config)"))
    if section.required_scopes and effective.signing is None:
        problems.append(
            ("required_scopes", "needs gateway-held keys: with HS256 tokens keyed by each "
             "consumer's client_secret, a consumer can sign any scope into its own tokens, so "
             "scopes would prove nothing; set plugins.oauth.signing: {alg: RS256} (or ES256, "
             "EdDSA), see docs/plugins/oauth.md")
        )  # fmt: skip
    return problems
