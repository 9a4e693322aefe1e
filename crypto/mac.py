"""Keyed hashes (HMAC-SHA256) for pseudonymous identifiers and stored key hashes.

Callers pass a SecretBytes handle; the key bytes stay inside crypto/.
"""

from __future__ import annotations

from crypto import _primitives
from crypto.secrets import SecretBytes


def keyed_hash(key: SecretBytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data): 32 bytes."""
    return _primitives.hmac_sha256(key.reveal(), data)


def same_digest(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return _primitives.constant_time_equal(a, b)
