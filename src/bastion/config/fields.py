"""Shared field types: listen addresses, domain patterns, header names, sizes and timeouts."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, Field

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 §5.6.2 token


class HostPort(NamedTuple):
    host: str
    port: int


def parse_host_port(value: str) -> HostPort:
    """`127.0.0.1:8080`, `[::1]:8080`, `:8080` (all addresses) or `localhost:8080`."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, got {value!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port!r}")
    return HostPort(host or "0.0.0.0", int(port))


def _check_listen(value: str) -> str:
    parse_host_port(value)
    return value


def check_domain_pattern(value: str) -> str:
    """Exact host names or `*.suffix` (any depth of sub-domain, never the apex)."""
    text = value.strip().lower()
    wildcard = text.startswith("*.")
    name = (text[2:] if wildcard else text).rstrip(".")  # a trailing dot: the same host
    text = "*." + name if wildcard else name
    if "*" in name:
        raise ValueError(
            f"{value!r}: a wildcard is allowed only as a leading '*.' (like *.example.com)"
        )
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        if wildcard:
            raise ValueError(f"{value!r}: a wildcard cannot stand before an IP address")
        # the form host_of() gives a Host header: IPv6 in brackets
        return f"[{address}]" if address.version == 6 else str(address)
    labels = name.split(".")
    if not name or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not a valid domain name or *.suffix pattern")
    return text


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen)]
DomainPattern = Annotated[str, AfterValidator(check_domain_pattern)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
Seconds = Annotated[float, Field(gt=0, le=86400)]
ByteSize = Annotated[int, Field(ge=0)]
HeaderLimit = Annotated[int, Field(ge=1024)]
