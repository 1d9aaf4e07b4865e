"""Thin wrappers over well-kept crypto libraries: password hashing, secret digests."""
