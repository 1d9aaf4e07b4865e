"""Parse a store URL (SPEC §2): sqlite:///PATH, redis://, rediss://, redis+sentinel://,
redis+cluster://."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from bastion.errors import ConfigError

SCHEMES = ("sqlite", "redis", "rediss", "redis+sentinel", "redis+cluster")


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL. For Redis: hosts (one, several sentinels, or cluster seeds)."""

    scheme: str
    path: Path | None = None  # sqlite
    hosts: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str | None = None  # redis+sentinel: the master's name
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return "sqlite" if self.scheme == "sqlite" else "redis"


def parse_store_url(url: str, field_path: str = "store") -> StoreUrl:
    """Parse, or raise ConfigError naming `field_path`."""

    def bad(message: str) -> ConfigError:
        return ConfigError([(field_path, f"{message} (got {redacted(url)!r})")])

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise bad(
            "expected sqlite:///PATH, redis://, rediss://, redis+sentinel:// or redis+cluster://"
        )
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise bad("sqlite needs a path: sqlite:///relative.db or sqlite:////absolute.db")
        return StoreUrl("sqlite", path=Path(unquote(rest[1:]) or "bastion.db"))
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        if not item:
            continue
        host, _, port = (
            item.rpartition(":") if item.rfind(":") > item.rfind("]") else (item, "", "")
        )
        host = host.strip("[]")
        if port and not port.isdigit():
            raise bad("bad port (a password with '/', '?' or '#' must be percent-encoded)")
        hosts.append((host, int(port) if port else (26379 if scheme == "redis+sentinel" else 6379)))
    if not hosts:
        raise bad("a Redis URL needs at least one host")
    segments = [s for s in parts.path.split("/") if s]
    service = None
    db = 0
    if scheme == "redis+sentinel":
        if not segments:
            raise bad(
                "redis+sentinel needs the master's name: redis+sentinel://HOST:26379/mymaster/0"
            )
        service = segments[0]
        segments = segments[1:]
    if segments:
        if not segments[0].isdigit():
            raise bad(f"the database must be a number, got {segments[0]!r}")
        db = int(segments[0])
    if scheme == "redis+cluster" and db != 0:
        raise bad("a Redis Cluster has only database 0")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    tls = scheme == "rediss" or options.get("ssl", "").lower() in ("1", "true", "yes")
    return StoreUrl(
        scheme, hosts=tuple(hosts), db=db, username=username, password=password,
        service=service, tls=tls, options=options,
    )  # fmt: skip


def redacted(url: str) -> str:
    """The URL with every password hidden (the user part's, and query values such as
    `sentinel_password`), for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, mark, query = rest.partition("?")
    at = rest.rfind("@")  # the parser splits at the last "@": a password may hold "@" and "/"
    if at >= 0:
        userinfo, tail = rest[:at], rest[at + 1 :]
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:***@{tail}" if ":" in userinfo else f"{user}@{tail}"
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            pairs.append(f"{name}=***" if eq and "password" in name.lower() else pair)
        query = "&".join(pairs)
    return f"{scheme}://{rest}{mark}{query}"
