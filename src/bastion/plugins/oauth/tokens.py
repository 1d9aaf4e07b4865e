"""RFC 9068 JWT access tokens: issue, and verify with the algorithm pinned by the key.

Two ways to hold keys. Higress's (the default): HS256 keyed with the consumer's client_secret,
the consumer found by the `client_id` claim. Bastion's opt-in (`signing`): the gateway's own key
pair, found by `kid` in a KeyRing. Either way the algorithm is the key's, never the token's
choice (no `none`, no HS/RS confusion), and a token is refused when any claim Higress checks is
wrong, or when it lives longer than token_ttl (a consumer holding its key could mint any exp).
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import orjson

from bastion.gateway.clock import Clock
from bastion.plugins.oauth.cache import VerifiedToken
from bastion.plugins.oauth.schema import Consumer, OAuthRule

TYP = "application/at+jwt"  # RFC 9068 §2.1
_TYPES = frozenset({"application/at+jwt", "at+jwt"})  # RFC 7515 §4.1.9 allows the short form
MAX_TOKEN = 8192  # bytes; a longer header value is not a token we issued
HS256 = "HS256"

Key = Any  # a joserfc key (OctKey, RSAKey, ECKey, OKPKey)


class InvalidToken(Exception):
    """Verification failed; `reason` is for logs and metrics, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyRing(Protocol):
    """Gateway-held keys (`signing`): one signs, every unexpired one verifies."""

    def signing_key(self) -> tuple[str, str, Key]:
        """(kid, alg, private key) of the key that signs new tokens."""
        ...

    def verification_key(self, kid: str) -> tuple[str, Key] | None:
        """(alg, public key) for `kid`, or None when no such key is kept."""
        ...


def consumer_key(secret: str) -> Key:
    """The HS256 key of a consumer (Higress: the client_secret's bytes)."""
    from joserfc.errors import SecurityWarning
    from joserfc.jwk import OctKey

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # short secrets: warned at load instead
        return OctKey.import_key(secret.encode())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """SPEC §11 names the alg "EdDSA"; RFC 9864 deprecates that name (for "Ed25519") and joserfc
    warns on every use, a raw line in a JSON log. The algorithm is the same: silence that one."""
    from joserfc.errors import SecurityWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        yield


class TokenCodec:
    """Issues and verifies the tokens of one effective config (one scope's consumers and
    settings); built at config load, so verifying only looks keys up."""

    def __init__(self, config: OAuthRule, clock: Clock, keyring: KeyRing | None = None) -> None:
        from joserfc import jws  # imported with the first oauth config: a proxy-only worker
        from joserfc.errors import JoseError  # never loads joserfc and cryptography

        self.jws = jws
        self.jose_error = JoseError
        # one registry per algorithm, allowing only it: joserfc builds one per call otherwise
        self.registries: dict[str, Any] = {}
        self.issuer = config.issuer
        self.ttl = config.token_ttl
        self.skew = config.clock_skew_seconds
        self.clock = clock
        self.keyring = keyring
        consumers = config.consumers or []
        self.by_id: dict[str, Consumer] = {c.client_id: c for c in consumers}
        self.keys: dict[str, Key] = (
            {c.client_id: consumer_key(c.client_secret) for c in consumers}
            if keyring is None
            else {}
        )

    def issue(self, consumer: Consumer, aud: str, scope: str | None) -> str:
        jws = self.jws
        now = int(self.clock.time())
        claims: dict[str, Any] = {
            "aud": aud, "client_id": consumer.client_id, "exp": now + self.ttl, "iat": now,
            "iss": self.issuer, "jti": str(uuid.uuid4()), "sub": consumer.name,
        }  # fmt: skip
        if scope:
            claims["scope"] = scope
        header: dict[str, Any] = {"alg": HS256, "typ": TYP}
        if self.keyring is None:
            key: Key = self.keys[consumer.client_id]
        else:
            kid, alg, key = self.keyring.signing_key()
            header = {"alg": alg, "typ": TYP, "kid": kid}
        alg = header["alg"]
        registry = self.registry(alg)
        if alg != "EdDSA":
            token: str = jws.serialize_compact(header, orjson.dumps(claims), key, registry=registry)
            return token
        with _quiet():
            token = jws.serialize_compact(header, orjson.dumps(claims), key, registry=registry)
            return token

    def registry(self, alg: str) -> Any:
        """joserfc's JWSRegistry that allows `alg` and no other (RFC 8725 §3.1), made once."""
        registry = self.registries.get(alg)
        if registry is None:
            registry = self.registries[alg] = self.jws.JWSRegistry(algorithms=[alg])
        return registry

    def verify(self, token: str) -> VerifiedToken:
        """The verified token, or InvalidToken saying why."""
        jws, jose_error = self.jws, self.jose_error
        if len(token) > MAX_TOKEN or token.count(".") != 2:
            raise InvalidToken("malformed")
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
            claims = orjson.loads(obj.payload)
        except (jose_error, ValueError, UnicodeError):
            raise InvalidToken("malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise InvalidToken("typ")  # RFC 9068 §4: not an access token (an ID token, say)
        if "crit" in header:
            raise InvalidToken("crit")  # RFC 7515 §4.1.11: no extension is understood here
        client_id = claims.get("client_id")
        if not isinstance(client_id, str):
            raise InvalidToken("client_id")
        consumer = self.by_id.get(client_id)
        if consumer is None:
            raise InvalidToken("unknown client_id")
        alg, key = self._key_for(header, client_id)
        if header.get("alg") != alg:
            raise InvalidToken("alg")  # the key fixes the algorithm (RFC 8725 §3.1)
        registry = self.registry(alg)
        try:
            if alg != "EdDSA":
                valid = jws.validate_compact(obj, key, registry=registry)
            else:
                with _quiet():
                    valid = jws.validate_compact(obj, key, registry=registry)
        except jose_error:
            valid = False
        if not valid:
            raise InvalidToken("signature")
        return self._check_claims(claims, consumer)

    def _key_for(self, header: Mapping[str, Any], client_id: str) -> tuple[str, Key]:
        if self.keyring is None:
            return HS256, self.keys[client_id]
        kid = header.get("kid")
        found = self.keyring.verification_key(kid) if isinstance(kid, str) else None
        if found is None:
            raise InvalidToken("unknown kid")
        return found

    def _check_claims(self, claims: dict[str, Any], consumer: Consumer) -> VerifiedToken:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("iss")
        if claims.get("sub") != consumer.name:
            raise InvalidToken("sub")
        aud, jti, scope = claims.get("aud"), claims.get("jti"), claims.get("scope", "")
        if not isinstance(aud, str):
            raise InvalidToken("aud")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("jti")  # without one a token could never be revoked
        if not isinstance(scope, str):
            raise InvalidToken("scope")
        exp, iat = claims.get("exp"), claims.get("iat")
        if type(exp) is not int or type(iat) is not int:
            raise InvalidToken("exp/iat")
        now = self.clock.time()
        if now > exp + self.skew:
            raise InvalidToken("expired")
        if iat > now + self.skew:
            raise InvalidToken("issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (type(nbf) is not int or nbf > now + self.skew):
            raise InvalidToken("not yet valid")  # RFC 7519 §4.1.5
        if exp <= iat or exp - iat > self.ttl + self.skew:
            # SPEC §10: a consumer holding its key must not mint a longer-lived token
            raise InvalidToken("lifetime over token_ttl")
        return VerifiedToken(consumer.name, aud, frozenset(scope.split()), exp, jti)
