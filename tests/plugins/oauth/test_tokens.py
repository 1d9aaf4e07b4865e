"""TokenCodec: the tokens Bastion issues, checked by PyJWT as an independent client, and the
tokens it verifies, forged with PyJWT (and by hand where PyJWT will not forge)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.plugins.oauth.cache import VerifiedToken
from bastion.plugins.oauth.schema import Consumer, OAuthRule
from bastion.plugins.oauth.tokens import MAX_TOKEN, InvalidToken, TokenCodec
from tests.plugins.oauth.support import (
    CONSUMERS,
    ID1,
    ID2,
    ISSUER,
    SECRET1,
    SECRET2,
    TYP,
    FakeClock,
    b64,
    claims,
    decode,
    forge,
    forge_raw,
)

TTL, SKEW = 7200, 60
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_codec(clock: FakeClock, **fields: Any) -> TokenCodec:
    config = OAuthRule.model_validate({"consumers": CONSUMERS, **fields})
    return TokenCodec(config, clock)


def consumer(index: int = 0) -> Consumer:
    return Consumer.model_validate(CONSUMERS[index])


# --- issue ------------------------------------------------------------------------------------


def test_issued_token_verifies_with_pyjwt(clock: FakeClock) -> None:
    token = make_codec(clock).issue(consumer(), "default", None)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": TYP}
    payload = decode(token)
    now = int(clock.time())
    assert set(payload) == {"iss", "sub", "aud", "client_id", "iat", "exp", "jti"}
    assert payload["iss"] == ISSUER
    assert payload["sub"] == "consumer1"
    assert payload["aud"] == "default"
    assert payload["client_id"] == ID1
    assert payload["iat"] == now
    assert payload["exp"] == now + TTL
    assert uuid.UUID(payload["jti"]).version == 4


def test_issued_token_uses_the_configured_issuer_ttl_and_audience(clock: FakeClock) -> None:
    token = make_codec(clock, issuer="my-gw", token_ttl=300).issue(consumer(1), "route-a", "read")
    payload = jwt.decode(token, SECRET2, algorithms=["HS256"], audience="route-a", issuer="my-gw")
    assert payload["sub"] == "consumer2"
    assert payload["client_id"] == ID2
    assert payload["exp"] - payload["iat"] == 300
    assert payload["scope"] == "read"


@pytest.mark.parametrize("scope", [None, ""])
def test_scope_claim_only_when_requested(clock: FakeClock, scope: str | None) -> None:
    token = make_codec(clock).issue(consumer(), "default", scope)
    assert "scope" not in decode(token)


def test_each_token_has_its_own_jti(clock: FakeClock) -> None:
    codec = make_codec(clock)
    jtis = {decode(codec.issue(consumer(), "default", None))["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_token_is_not_valid_with_another_consumers_secret(clock: FakeClock) -> None:
    token = make_codec(clock).issue(consumer(), "default", None)
    with pytest.raises(jwt.InvalidSignatureError):
        decode(token, secret=SECRET2)


def test_issued_token_round_trips(clock: FakeClock) -> None:
    codec = make_codec(clock)
    token = codec.issue(consumer(1), "route-a", "read write")
    verified = codec.verify(token)
    payload = decode(token, SECRET2, audience="route-a")
    assert verified == VerifiedToken(
        "consumer2", "route-a", frozenset({"read", "write"}), payload["exp"], payload["jti"]
    )


def test_the_jws_registry_is_made_once_per_algorithm(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config-load work stays out of verify: joserfc builds a registry per call unless given one."""
    from joserfc import jws

    made: list[object] = []
    original = jws.JWSRegistry.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(kwargs.get("algorithms"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(jws.JWSRegistry, "__init__", counting)
    codec = make_codec(clock)
    tokens = [codec.issue(consumer(i % 2), "default", None) for i in range(4)]
    for token in tokens * 2:
        codec.verify(token)
    with pytest.raises(InvalidToken):
        codec.verify(forge(claims(clock), SECRET1, alg="HS384"))
    assert made == [["HS256"]]  # it allows HS256 alone: the key, not the token, picks the alg


def test_higress_issued_token_from_the_reference_docs_verifies() -> None:
    """The example token of reference 000, issued by Higress itself, with its example secret."""
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6ImFwcGxpY2F0aW9uXC9hdCtqd3QifQ.eyJhdWQiOiJkZWZhdWx0IiwiY2xp"
        "ZW50X2lkIjoiMTIzNDU2NzgteHh4eC14eHh4LXh4eHgteHh4eHh4eHh4eHh4IiwiZXhwIjoxNjg3OTUxNDYzLCJp"
        "YXQiOjE2ODc5NDQyNjMsImlzcyI6IkhpZ3Jlc3MtR2F0ZXdheSIsImp0aSI6IjEwOTU5ZDFiLThkNjEtNGRlYy1i"
        "ZWE3LTk0ODEwMzc1YjYzYyIsInN1YiI6ImNvbnN1bWVyMSJ9.NkT_rG3DcV9543vBQgneVqoGfIhVeOuUBwLJJ4Wy"
        "cb0"
    )
    consumers = [
        {
            "name": "consumer1",
            "client_id": "12345678-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            "client_secret": "abcdefgh-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        }
    ]
    iat, exp = 1687944263, 1687951463
    clock = FakeClock(iat + 10)
    codec = TokenCodec(OAuthRule.model_validate({"consumers": consumers}), clock)
    verified = codec.verify(token)
    assert (verified.consumer, verified.aud, verified.exp) == ("consumer1", "default", exp)
    assert verified.jti == "10959d1b-8d61-4dec-bea7-94810375b63c"
    clock.now = exp + SKEW + 1
    with pytest.raises(InvalidToken):
        codec.verify(token)


# --- verify: forged tokens --------------------------------------------------------------------

Forger = Callable[[FakeClock], str]


def _unsigned(clock: FakeClock) -> str:
    return forge(claims(clock), None, alg="none")


def _none_with_empty_signature(clock: FakeClock) -> str:
    header = b64(b'{"alg":"none","typ":"application/at+jwt"}')
    return f"{header}.{b64(orjson.dumps(claims(clock)))}."


def _rs256(clock: FakeClock) -> str:
    return jwt.encode(claims(clock), RSA_KEY, algorithm="RS256", headers={"typ": TYP})


def _iat_exp(clock: FakeClock, iat: int, exp: int) -> dict[str, Any]:
    now = int(clock.time())
    return claims(clock, iat=now + iat, exp=now + exp)


REFUSED: list[tuple[str, Forger]] = [
    ("wrong secret", lambda c: forge(claims(c), SECRET2)),
    ("another consumer's id with my secret", lambda c: forge(claims(c, ID2), SECRET1)),
    ("alg none", _unsigned),
    ("alg none, empty signature", _none_with_empty_signature),
    ("HS512 signed with the secret", lambda c: forge(claims(c), SECRET1, alg="HS512")),
    ("HS384 signed with the secret", lambda c: forge(claims(c), SECRET1, alg="HS384")),
    ("RS256 signed with an RSA key", _rs256),
    (
        "header says HS512, HS256 signature",
        lambda c: forge_raw({"alg": "HS512", "typ": TYP}, claims(c), SECRET1),
    ),
    (
        "header says RS256, HS256 signature",
        lambda c: forge_raw({"alg": "RS256", "typ": TYP}, claims(c), SECRET1),
    ),
    ("header without alg", lambda c: forge_raw({"typ": TYP}, claims(c), SECRET1)),
    ("missing typ", lambda c: forge(claims(c), headers={"typ": None})),
    ("typ JWT", lambda c: forge(claims(c), headers={"typ": "JWT"})),
    ("typ JOSE", lambda c: forge(claims(c), headers={"typ": "JOSE"})),
    ("typ not a string", lambda c: forge_raw({"alg": "HS256", "typ": 1}, claims(c), SECRET1)),
    (
        "crit header",
        lambda c: forge_raw(
            {"alg": "HS256", "typ": TYP, "crit": ["exp"], "exp": 1}, claims(c), SECRET1
        ),
    ),
    ("expired beyond skew", lambda c: forge(_iat_exp(c, -TTL - SKEW - 1, -SKEW - 1))),
    ("iat in the future beyond skew", lambda c: forge(_iat_exp(c, SKEW + 1, SKEW + 100))),
    ("exp - iat over token_ttl + skew", lambda c: forge(_iat_exp(c, 0, TTL + SKEW + 1))),
    ("a year-long token minted by the consumer", lambda c: forge(_iat_exp(c, 0, 365 * 86400))),
    ("exp before iat", lambda c: forge(_iat_exp(c, 0, -1))),
    ("exp equal to iat", lambda c: forge(_iat_exp(c, 0, 0))),
    ("missing jti", lambda c: forge(claims(c, jti=None))),
    ("empty jti", lambda c: forge(claims(c, jti=""))),
    ("jti not a string", lambda c: forge(claims(c, jti=5))),
    ("missing exp", lambda c: forge(claims(c, exp=None))),
    ("missing iat", lambda c: forge(claims(c, iat=None))),
    ("non-int exp (float)", lambda c: forge(claims(c, exp=int(c.time()) + 100.5))),
    ("non-int exp (string)", lambda c: forge(claims(c, exp=str(int(c.time()) + 100)))),
    ("non-int exp (bool)", lambda c: forge(claims(c, exp=True))),
    ("non-int iat (string)", lambda c: forge(claims(c, iat=str(int(c.time()))))),
    ("aud not a string (list)", lambda c: forge(claims(c, aud=["default"]))),
    ("aud not a string (int)", lambda c: forge(claims(c, aud=1))),
    ("missing aud", lambda c: forge(claims(c, aud=None))),
    ("wrong iss", lambda c: forge(claims(c, iss="someone-else"))),
    ("missing iss", lambda c: forge(claims(c, iss=None))),
    ("wrong sub", lambda c: forge(claims(c, sub="consumer2"))),
    ("missing sub", lambda c: forge(claims(c, sub=None))),
    ("unknown client_id", lambda c: forge({**claims(c), "client_id": "nobody"})),
    ("missing client_id", lambda c: forge(_without(claims(c), "client_id"))),
    ("client_id not a string", lambda c: forge({**claims(c), "client_id": 12345678})),
    ("scope not a string", lambda c: forge(claims(c, scope=["read"]))),
    ("payload a list", lambda c: forge_raw({"alg": "HS256", "typ": TYP}, b"[1]", SECRET1)),
    ("payload not JSON", lambda c: forge_raw({"alg": "HS256", "typ": TYP}, b"{", SECRET1)),
    ("payload not UTF-8", lambda c: forge_raw({"alg": "HS256", "typ": TYP}, b"\xff", SECRET1)),
    ("header a list", lambda c: forge_raw(b"[]", claims(c), SECRET1)),
    ("header null", lambda c: forge_raw(b"null", claims(c), SECRET1)),
    ("garbage", lambda c: "garbage"),
    ("garbage with dots", lambda c: "a.b.c"),
    ("empty", lambda c: ""),
    ("only dots", lambda c: ".."),
    ("four parts", lambda c: forge(claims(c)) + ".x"),
    ("non-ASCII", lambda c: "\u00e9" + forge(claims(c))),
    ("signature tampered", lambda c: forge(claims(c))[:-4] + "AAAA"),
    ("payload swapped", lambda c: _swap_payload(forge(claims(c)), claims(c, sub="consumer2"))),
    ("over 8192 characters", lambda c: forge(claims(c, pad="x" * MAX_TOKEN))),
]


def _without(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != name}


def _swap_payload(token: str, payload: dict[str, Any]) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64(orjson.dumps(payload))}.{sig}"


@pytest.mark.parametrize("forger", [f for _, f in REFUSED], ids=[n for n, _ in REFUSED])
def test_forged_tokens_are_refused(clock: FakeClock, forger: Forger) -> None:
    token = forger(clock)
    with pytest.raises(InvalidToken) as info:
        make_codec(clock).verify(token)
    assert info.value.reason  # for logs and metrics


@pytest.mark.parametrize(
    ("name", "forger", "reason"),
    [
        ("alg none", _unsigned, "alg"),
        ("HS512", lambda c: forge(claims(c), alg="HS512"), "alg"),
        ("wrong secret", lambda c: forge(claims(c), SECRET2), "signature"),
        ("typ JWT", lambda c: forge(claims(c), headers={"typ": "JWT"}), "typ"),
        (
            "unknown client_id",
            lambda c: forge({**claims(c), "client_id": "x"}),
            "unknown client_id",
        ),
        ("wrong iss", lambda c: forge(claims(c, iss="x")), "iss"),
        ("wrong sub", lambda c: forge(claims(c, sub="x")), "sub"),
        ("expired", lambda c: forge(_iat_exp(c, -TTL - SKEW - 1, -SKEW - 1)), "expired"),
        ("future", lambda c: forge(_iat_exp(c, SKEW + 1, SKEW + 10)), "issued in the future"),
        ("too long", lambda c: forge(_iat_exp(c, 0, TTL + SKEW + 1)), "lifetime over token_ttl"),
        ("no jti", lambda c: forge(claims(c, jti=None)), "jti"),
        ("long", lambda c: "a." * 4097 + "b", "malformed"),
    ],
)
def test_refusal_reasons(clock: FakeClock, name: str, forger: Forger, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        make_codec(clock).verify(forger(clock))
    assert info.value.reason == reason


ACCEPTED: list[tuple[str, Forger]] = [
    ("forged by the consumer itself, by the book", lambda c: forge(claims(c))),
    ("expired within skew", lambda c: forge(_iat_exp(c, -TTL - SKEW, -SKEW))),
    ("iat in the future within skew", lambda c: forge(_iat_exp(c, SKEW, SKEW + TTL))),
    ("exp - iat == token_ttl + skew", lambda c: forge(_iat_exp(c, -SKEW, TTL))),
    ("short-lived", lambda c: forge(_iat_exp(c, 0, 1))),
    (
        "typ short form at+jwt (RFC 7515 §4.1.9)",
        lambda c: forge(claims(c), headers={"typ": "at+jwt"}),
    ),
    ("typ in upper case", lambda c: forge(claims(c), headers={"typ": "Application/AT+JWT"})),
    ("aud of a route (global credentials)", lambda c: forge(claims(c, aud="route-a"))),
    ("with scope", lambda c: forge(claims(c, scope="read write"))),
    ("extra claims", lambda c: forge(claims(c, nbf=0, custom="x"))),
    ("a kid header", lambda c: forge(claims(c), headers={"typ": TYP, "kid": "k1"})),
    ("second consumer", lambda c: forge(claims(c, ID2), SECRET2)),
]


@pytest.mark.parametrize("forger", [f for _, f in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_valid_tokens_are_accepted(clock: FakeClock, forger: Forger) -> None:
    verified = make_codec(clock).verify(forger(clock))
    assert verified.consumer in {"consumer1", "consumer2"}


def test_the_configured_skew_and_ttl_are_the_limits(clock: FakeClock) -> None:
    codec = make_codec(clock, clock_skew_seconds=0, token_ttl=60)
    now = int(clock.time())
    codec.verify(forge(claims(clock, iat=now - 60, exp=now)))  # exp == now: still valid
    for iat, exp in [(now - 61, now - 1), (now + 1, now + 10), (now, now + 61)]:
        with pytest.raises(InvalidToken):
            codec.verify(forge(claims(clock, iat=iat, exp=exp)))


def test_a_token_expires_as_the_clock_moves(clock: FakeClock) -> None:
    codec = make_codec(clock, token_ttl=100, clock_skew_seconds=10)
    token = codec.issue(consumer(), "default", None)
    clock.advance(110)
    codec.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidToken) as info:
        codec.verify(token)
    assert info.value.reason == "expired"


def test_a_token_of_another_issuer_config_is_refused(clock: FakeClock) -> None:
    token = make_codec(clock, issuer="gw-a").issue(consumer(), "default", None)
    with pytest.raises(InvalidToken):
        make_codec(clock, issuer="gw-b").verify(token)


def test_renaming_a_consumer_invalidates_its_tokens(clock: FakeClock) -> None:
    token = make_codec(clock).issue(consumer(), "default", None)
    renamed = [{**CONSUMERS[0], "name": "renamed"}, CONSUMERS[1]]
    codec = TokenCodec(OAuthRule.model_validate({"consumers": renamed}), clock)
    with pytest.raises(InvalidToken):
        codec.verify(token)


def test_changing_a_secret_invalidates_its_tokens(clock: FakeClock) -> None:
    token = make_codec(clock).issue(consumer(), "default", None)
    changed = [{**CONSUMERS[0], "client_secret": "n" * 64}, CONSUMERS[1]]
    codec = TokenCodec(OAuthRule.model_validate({"consumers": changed}), clock)
    with pytest.raises(InvalidToken):
        codec.verify(token)


def test_scopes_are_split_on_spaces(clock: FakeClock) -> None:
    verified = make_codec(clock).verify(forge(claims(clock, scope="a  b c")))
    assert verified.scopes == frozenset({"a", "b", "c"})
    assert make_codec(clock).verify(forge(claims(clock))).scopes == frozenset()
