"""Client authentication at a token endpoint (RFC 6749 §2.3, RFC 7523, OpenID Connect Core §9).

One function per method, each adding to the form and headers of a token request:
client_secret_post, client_secret_basic, client_secret_jwt (HMAC assertion keyed by the secret),
private_key_jwt (an assertion signed with the client's private key, with its `kid`), and none.
"""

from __future__ import annotations

import base64
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import orjson

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
ASSERTION_LIFETIME = 60  # seconds, as Kong's assertions


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """How this gateway proves who it is to the IdP."""

    method: (
        str  # client_secret_post | client_secret_basic | client_secret_jwt | private_key_jwt | none
    )
    client_id: str | None
    client_secret: str | None = None
    jwt_alg: str = (
        "HS512"  # client_secret_jwt: HS512 | HS256; private_key_jwt: RS256 | ES256 | EdDSA
    )
    private_key: Any = None  # a joserfc key, for private_key_jwt
    kid: str | None = None


#: the key type each private_key_jwt algorithm signs with (RFC 7518 §3.1, RFC 8037 §3.1)
KEY_TYPES = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


def load_private_key(pem: str, alg: str | None = None) -> Any:
    """A joserfc key from PEM text (able to sign `alg` when given); ValueError saying why not."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from joserfc.jwk import import_key

    try:
        parsed = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        if "PUBLIC KEY" in pem:
            raise ValueError("a public key was given where the private key is needed") from None
        raise ValueError("not a PEM private key (or an encrypted one)") from None
    if isinstance(parsed, rsa.RSAPrivateKey):
        key_type = "RSA"
    elif isinstance(parsed, ec.EllipticCurvePrivateKey) and parsed.curve.name == "secp256r1":
        key_type = "EC"
    elif isinstance(parsed, ed25519.Ed25519PrivateKey):
        key_type = "OKP"
    else:
        raise ValueError("the key must be RSA, EC P-256 or Ed25519")
    if alg is not None and KEY_TYPES[alg] != key_type:
        raise ValueError(f"a {key_type} key cannot sign {alg} (set client.private_key_jwt_alg)")
    importer: Any = import_key  # overloaded per literal key type; the type is known only here
    return importer(pem.encode(), key_type)


def apply(
    creds: ClientCredentials, form: dict[str, str], headers: dict[str, str], audience: str
) -> None:
    """Add the client authentication of `creds` to a token request to `audience` (its URL)."""
    method = creds.method
    if method == "client_secret_basic":
        pair = f"{quote_plus(creds.client_id or '')}:{quote_plus(creds.client_secret or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return
    if creds.client_id is not None:
        form["client_id"] = creds.client_id
    if method == "client_secret_post":
        form["client_secret"] = creds.client_secret or ""
    elif method in ("client_secret_jwt", "private_key_jwt"):
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = _assertion(creds, audience)


def _assertion(creds: ClientCredentials, audience: str) -> str:
    """RFC 7523 §3: iss = sub = client_id, aud = the token endpoint, a short life, a jti."""
    from joserfc import jws
    from joserfc.errors import SecurityWarning
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {
        "iss": creds.client_id, "sub": creds.client_id, "aud": audience,
        "jti": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + ASSERTION_LIFETIME,
    }  # fmt: skip
    header: dict[str, Any] = {"alg": creds.jwt_alg, "typ": "JWT"}
    if creds.method == "client_secret_jwt":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # a short secret is the IdP's choice
            key: Any = OctKey.import_key((creds.client_secret or "").encode())
    else:
        key = creds.private_key
        if creds.kid:
            header["kid"] = creds.kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # RFC 9864's rename of EdDSA
        return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=[creds.jwt_alg])
