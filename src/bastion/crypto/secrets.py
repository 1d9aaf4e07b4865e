"""Secrets at rest (SPEC §8, issue 4): what the store may keep of a password, a client secret, a
token or a code.

- Passwords (chosen by people, low entropy): argon2id hashes (argon2-cffi, RFC 9106 parameters),
  verified in constant time, re-hashed when the parameters change.
- Secrets Bastion generates (client secrets, opaque tokens, codes: 256 random bits): a SHA-256
  digest. A slow hash buys nothing against 256 bits of entropy and would cap token issuance;
  the digest is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 §4 second recommended option (64 MiB, 3 passes, 4 lanes), argon2-cffi's default profile
_HASHER = PasswordHasher()

SECRET_BYTES = 32  # 256 bits


def hash_password(password: str) -> str:
    """An argon2id hash in PHC string form (`$argon2id$v=19$m=...`)."""
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """True when `password` matches `stored`; False for a mismatch or a malformed hash."""
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(stored: str) -> bool:
    """True when `stored` was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def new_secret() -> str:
    """256 random bits, URL-safe base64 (43 characters): client secrets, opaque tokens, codes."""
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    """The SHA-256 digest (hex) under which a generated secret is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches_digest(stored_digest: str, secret: str) -> bool:
    """Constant-time comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(stored_digest, digest(secret))
