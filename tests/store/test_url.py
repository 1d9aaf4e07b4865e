"""Store URLs (SPEC §2): every scheme, and errors that name the field and hide the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.store.url import parse_store_url, redacted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///bastion.db", {"scheme": "sqlite", "path": Path("bastion.db")}),
        ("sqlite:////var/lib/bastion/b.db", {"path": Path("/var/lib/bastion/b.db")}),
        ("redis://127.0.0.1:6380/2", {"hosts": (("127.0.0.1", 6380),), "db": 2, "tls": False}),
        ("redis://h", {"hosts": (("h", 6379),), "db": 0}),
        ("rediss://user:pw@h:6390", {"tls": True, "username": "user", "password": "pw"}),
        ("redis://:p%40ss@h/0", {"password": "p@ss", "username": None}),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster/1",
            {"hosts": (("s1", 26379), ("s2", 26380)), "service": "mymaster", "db": 1},
        ),
        ("redis+sentinel://s1/mymaster", {"hosts": (("s1", 26379),), "db": 0}),
        ("redis+cluster://a:7000,b:7001", {"hosts": (("a", 7000), ("b", 7001)), "db": 0}),
        ("redis://[::1]:6379/0", {"hosts": (("::1", 6379),)}),
    ],
)
def test_store_urls_parse(url: str, expected: dict[str, object]) -> None:
    parsed = parse_store_url(url)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", "expected sqlite:///PATH"),
        ("sqlite://", "sqlite needs a path"),
        ("redis://", "at least one host"),
        ("redis://h:port/0", "bad port"),
        ("redis://h/db", "the database must be a number"),
        ("redis+sentinel://s1:26379", "needs the master's name"),
        ("redis+cluster://a:7000/3", "only database 0"),
    ],
)
def test_bad_store_urls_name_the_field(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url(url, "store")
    ((path, text),) = caught.value.problems
    assert path == "store"
    assert message in text


def test_messages_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url("redis://:s3cret@h:x/0")
    assert "s3cret" not in caught.value.render()
    assert redacted("redis://user:s3cret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"
