"""forwarding.ForwardRule: which request headers never go upstream, and its bounded memo."""

from __future__ import annotations

import pytest

from bastion.gateway.forwarding import IDENTITY_NAMES, ForwardRule, connection_tokens, request_id
from bastion.gateway.responses import status_line


@pytest.mark.parametrize(
    "name",
    [
        b"connection", b"transfer-encoding", b"host", b"x-forwarded-for", b"x-request-id",
        b"x-mse-consumer", b"x_mse_consumer", b"x-auth-request-email", b"x_auth_request_user",
        b"eg-consumer-id", b"x-plugin-identity",
    ],
)  # fmt: skip
def test_dropped_and_identity_names_never_go_upstream(name: bytes) -> None:
    rule = ForwardRule(IDENTITY_NAMES | {b"x-plugin-identity"})
    assert rule.never_forwarded(name)
    assert rule.never_forwarded(name)  # the remembered verdict is the same


@pytest.mark.parametrize("name", [b"accept", b"user-agent", b"x-auth-requested", b"x_custom"])
def test_other_names_go_upstream(name: bytes) -> None:
    rule = ForwardRule()
    assert not rule.never_forwarded(name)
    assert not rule.never_forwarded(name)


def test_the_memo_is_bounded_in_names_and_length() -> None:
    rule = ForwardRule()
    for i in range(2000):
        assert not rule.never_forwarded(b"x-invented-%d" % i)
    long_name = b"x-" + b"a" * 500
    assert not rule.never_forwarded(long_name)
    assert len(rule._verdicts) == 512
    assert long_name not in rule._verdicts
    # past the bound, verdicts are still right: computed each time
    assert rule.never_forwarded(b"x-auth-request-late")
    assert not rule.never_forwarded(b"x-late")


def test_each_config_has_its_own_identity_names() -> None:
    assert not ForwardRule().never_forwarded(b"x-plugin-identity")
    assert ForwardRule(IDENTITY_NAMES | {b"x-plugin-identity"}).never_forwarded(
        b"x-plugin-identity"
    )


def test_request_ids_are_128_random_bits_in_hex_and_never_repeat() -> None:
    ids = [request_id(None) for _ in range(1000)]  # several refills of the pool (256 each)
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert len(value) == 32 and int(value, 16) >= 0 and value == value.lower()


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [(b"abc-123", True), (b"A.b_c:d", True), (b"x" * 128, True), (b"x" * 129, False),
     (b"", False), (b"a b", False), (b"a\xff", False)],
)  # fmt: skip
def test_a_well_formed_incoming_id_is_kept(incoming: bytes, kept: bool) -> None:
    value = request_id(incoming)
    assert (value == incoming.decode("latin-1")) is kept
    if not kept:
        assert len(value) == 32


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        (None, set()),
        (b"", set()),
        (b"keep-alive", set()),
        (b"close", set()),
        (b"Keep-Alive", set()),
        (b"Close", set()),
        (b"KEEP-ALIVE", set()),  # past the compared spellings: split, lowered, the same answer
        (b"keep-alive, Upgrade", {b"upgrade"}),
        (b"close,X-Secret , te", {b"x-secret", b"te"}),
        (b"keep-alivf", {b"keep-alivf"}),
    ],
)
def test_connection_tokens_are_the_names_connection_lists(
    value: bytes | None, tokens: set[bytes]
) -> None:
    assert connection_tokens(value) == tokens


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (200, b"HTTP/1.1 200 OK\r\n"),
        (204, b"HTTP/1.1 204 No Content\r\n"),
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (599, b"HTTP/1.1 599 Unknown\r\n"),
    ],
)
def test_status_lines(status: int, line: bytes) -> None:
    assert status_line(status) == line
