"""Client authentication at a token endpoint: the form fields and headers of each method, the
RFC 7523 assertions checked with PyJWT (an independent verifier), and private key loading."""

from __future__ import annotations

import base64
import time
import warnings
from typing import Any
from urllib.parse import unquote_plus

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.errors import SecurityWarning

from bastion.idp.client_auth import (
    ASSERTION_TYPE,
    ClientCredentials,
    apply,
    load_private_key,
)

ENDPOINT = "https://idp.example.com/oauth2/token"
CLIENT = "gateway-client"
# 64 bytes: long enough for PyJWT's HS512 key-length check
SECRET = "s3cret-" + "x" * 57

# joserfc warns on PEM imports without an explicit key type (a bug, see
# test_loading_a_key_emits_no_warning); the behaviour tests below look past that warning
IGNORE_IMPLICIT = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


def _pem(key: Any, public: bool = False) -> str:
    if public:
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """Private keys by JWS alg (generated once: RSA generation is the slow part)."""
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


def run(creds: ClientCredentials) -> tuple[dict[str, str], dict[str, str]]:
    form: dict[str, str] = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    apply(creds, form, headers, ENDPOINT)
    return form, headers


def check_assertion(token: str, key: Any, alg: str) -> dict[str, Any]:
    """The RFC 7523 §3 claims, verified with PyJWT; returns the payload."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    assert header["alg"] == alg
    payload: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[alg],
        audience=ENDPOINT,
        issuer=CLIENT,
        options={"require": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]},
    )
    now = int(time.time())
    assert payload["sub"] == CLIENT
    assert abs(payload["iat"] - now) <= 2
    assert payload["nbf"] == payload["iat"]
    assert payload["exp"] == payload["iat"] + 60
    assert isinstance(payload["jti"], str) and payload["jti"]
    return payload


# --- client_secret_post, client_secret_basic, none ----------------------------------------------


def test_client_secret_post_puts_id_and_secret_in_the_form() -> None:
    form, headers = run(ClientCredentials("client_secret_post", CLIENT, SECRET))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT,
        "client_secret": SECRET,
    }
    assert headers == {}


def test_client_secret_basic_sends_only_an_authorization_header() -> None:
    form, headers = run(ClientCredentials("client_secret_basic", CLIENT, SECRET))
    assert form == {"grant_type": "client_credentials"}
    assert set(headers) == {"Authorization"}
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{CLIENT}:{SECRET}"


@pytest.mark.parametrize(
    ("client_id", "secret", "expected"),
    [
        # RFC 6749 §2.3.1: each part form-encoded before the Basic encoding
        ("my client", "p@ss:w/rd+%", "my+client:p%40ss%3Aw%2Frd%2B%25"),
        ("id:with:colons", "sécret&=?", "id%3Awith%3Acolons:s%C3%A9cret%26%3D%3F"),
        ("plain-id_1.2", "plain.secret-_", "plain-id_1.2:plain.secret-_"),
    ],
)
def test_client_secret_basic_form_encodes_odd_characters(
    client_id: str, secret: str, expected: str
) -> None:
    _, headers = run(ClientCredentials("client_secret_basic", client_id, secret))
    decoded = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert decoded == expected
    user, _, password = decoded.partition(":")  # the one unencoded colon splits them
    assert (unquote_plus(user), unquote_plus(password)) == (client_id, secret)


def test_none_sends_only_the_client_id() -> None:
    form, headers = run(ClientCredentials("none", CLIENT))
    assert form == {"grant_type": "client_credentials", "client_id": CLIENT}
    assert headers == {}


def test_none_without_a_client_id_adds_nothing() -> None:
    form, headers = run(ClientCredentials("none", None))
    assert form == {"grant_type": "client_credentials"}
    assert headers == {}


# --- client_secret_jwt ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS512", "HS256"])
def test_client_secret_jwt_is_an_hmac_assertion_keyed_by_the_secret(alg: str) -> None:
    form, headers = run(ClientCredentials("client_secret_jwt", CLIENT, SECRET, alg))
    assert headers == {}
    assert "client_secret" not in form
    assert form["client_id"] == CLIENT
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    check_assertion(form["client_assertion"], SECRET, alg)
    assert "kid" not in jwt.get_unverified_header(form["client_assertion"])


def test_client_secret_jwt_defaults_to_hs512() -> None:
    assert ClientCredentials("client_secret_jwt", CLIENT, SECRET).jwt_alg == "HS512"
    form, _ = run(ClientCredentials("client_secret_jwt", CLIENT, SECRET))
    check_assertion(form["client_assertion"], SECRET, "HS512")


def test_client_secret_jwt_fails_verification_with_another_secret() -> None:
    form, _ = run(ClientCredentials("client_secret_jwt", CLIENT, SECRET))
    with pytest.raises(jwt.InvalidSignatureError):
        check_assertion(form["client_assertion"], "another-" + "y" * 56, "HS512")


def test_every_assertion_has_its_own_jti() -> None:
    creds = ClientCredentials("client_secret_jwt", CLIENT, SECRET)
    jtis = {
        check_assertion(run(creds)[0]["client_assertion"], SECRET, "HS512")["jti"]
        for _ in "abcdefgh"
    }
    assert len(jtis) == 8


# --- private_key_jwt --------------------------------------------------------------------------


@IGNORE_IMPLICIT
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_private_key_jwt_is_signed_with_the_key_and_carries_the_kid(
    keys: dict[str, Any], alg: str
) -> None:
    key = load_private_key(_pem(keys[alg]))
    form, headers = run(ClientCredentials("private_key_jwt", CLIENT, None, alg, key, "key-2024"))
    assert headers == {}
    assert "client_secret" not in form
    assert form["client_id"] == CLIENT
    assert form["client_assertion_type"] == ASSERTION_TYPE
    token = form["client_assertion"]
    check_assertion(token, keys[alg].public_key(), alg)
    assert jwt.get_unverified_header(token)["kid"] == "key-2024"


@IGNORE_IMPLICIT
def test_private_key_jwt_without_a_kid_has_no_kid_header(keys: dict[str, Any]) -> None:
    key = load_private_key(_pem(keys["ES256"]))
    form, _ = run(ClientCredentials("private_key_jwt", CLIENT, None, "ES256", key))
    token = form["client_assertion"]
    check_assertion(token, keys["ES256"].public_key(), "ES256")
    assert "kid" not in jwt.get_unverified_header(token)


@IGNORE_IMPLICIT
def test_private_key_jwt_does_not_verify_with_another_key(keys: dict[str, Any]) -> None:
    key = load_private_key(_pem(keys["ES256"]))
    form, _ = run(ClientCredentials("private_key_jwt", CLIENT, None, "ES256", key))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        check_assertion(form["client_assertion"], other, "ES256")


# --- load_private_key -------------------------------------------------------------------------


@IGNORE_IMPLICIT
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_load_private_key_takes_pem_private_keys(keys: dict[str, Any], alg: str) -> None:
    key = load_private_key(_pem(keys[alg]))
    assert key.is_private


@IGNORE_IMPLICIT
def test_load_private_key_takes_a_traditional_rsa_pem(keys: dict[str, Any]) -> None:
    pem = (
        keys["RS256"]
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert load_private_key(pem).is_private


@IGNORE_IMPLICIT
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_load_private_key_refuses_a_public_key(keys: dict[str, Any], alg: str) -> None:
    with pytest.raises(ValueError, match="public key"):
        load_private_key(_pem(keys[alg], public=True))


@IGNORE_IMPLICIT
def test_load_private_key_refuses_empty_text() -> None:
    with pytest.raises(ValueError, match="not a PEM private key"):
        load_private_key("")


@IGNORE_IMPLICIT
@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "a-shared-secret-that-someone-pasted-here",
    ],
)
def test_load_private_key_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        load_private_key(text)


def test_loading_a_key_emits_no_warning(keys: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        assert load_private_key(_pem(keys["ES256"])).is_private
