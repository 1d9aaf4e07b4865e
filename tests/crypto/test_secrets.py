"""Secrets at rest: argon2id for passwords, SHA-256 digests for generated secrets."""

from __future__ import annotations

from bastion.crypto.secrets import (
    digest,
    hash_password,
    matches_digest,
    new_secret,
    password_needs_rehash,
    verify_password,
)


def test_password_hash_is_argon2id_and_never_contains_the_password() -> None:
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "correct horse battery stapler")


def test_the_same_password_hashes_differently_each_time() -> None:
    assert hash_password("pw") != hash_password("pw")


def test_a_malformed_hash_never_verifies_and_needs_rehash() -> None:
    assert not verify_password("not-a-hash", "pw")
    assert password_needs_rehash("not-a-hash")
    assert not password_needs_rehash(hash_password("pw"))


def test_generated_secrets_are_256_bits_and_unique() -> None:
    values = {new_secret() for _ in range(200)}
    assert len(values) == 200
    assert all(len(v) == 43 for v in values)  # 32 bytes in URL-safe base64, no padding


def test_digest_is_sha256_hex_and_verifies_in_constant_time() -> None:
    secret = new_secret()
    stored = digest(secret)
    assert len(stored) == 64 and secret not in stored
    assert matches_digest(stored, secret)
    assert not matches_digest(stored, secret + "x")
