"""Config of the `headers` plugin; a rule has the same fields and replaces the instance config."""

from __future__ import annotations

from pydantic import Field, field_validator

from bastion.config.fields import HeaderName
from bastion.config.model import Model

# Framing is the gateway's job: letting config change it would allow request smuggling.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "upgrade", "te", "expect", "trailer"}
)


class HeaderEdits(Model):
    set: dict[HeaderName, str] = Field(
        default_factory=dict, description="Headers to set, replacing any value already there."
    )
    remove: list[HeaderName] = Field(default_factory=list, description="Headers to remove.")

    @field_validator("set")
    @classmethod
    def _check_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"{name}: a header value cannot contain CR, LF or NUL")
            try:
                text.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"{name}: a header value must be Latin-1 text") from None
        return value

    @field_validator("set", "remove")
    @classmethod
    def _no_framing(cls, value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        for name in value:
            if name.lower() in FRAMING_HEADERS:
                raise ValueError(f"{name}: framing headers are managed by the gateway")
        return value


class HeadersConfig(Model):
    request: HeaderEdits = Field(
        default_factory=HeaderEdits, description="Edits to the request sent upstream."
    )
    response: HeaderEdits = Field(
        default_factory=HeaderEdits, description="Edits to the response sent to the client."
    )
