"""Ed25519 signatures for erasure receipts and signed chain heads.

Plain RFC 8032 Ed25519 over the caller's bytes, so tenants can verify a receipt offline
with any standard library and the published public key. The private key is a 32-byte seed
held as SecretBytes (wrap it under the root key with PURPOSE_DEPLOYMENT_SECRET).
"""

from __future__ import annotations

from crypto import _primitives
from crypto.secrets import SecretBytes


def generate_signing_key() -> SecretBytes:
    return SecretBytes(_primitives.ed25519_generate())


def public_key(signing_key: SecretBytes) -> bytes:
    """The 32-byte raw public key to publish."""
    return _primitives.ed25519_public_key(signing_key.reveal())


def sign(signing_key: SecretBytes, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature."""
    return _primitives.ed25519_sign(signing_key.reveal(), message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Return if the signature is valid; IntegrityError otherwise (never False)."""
    _primitives.ed25519_verify(public_key, signature, message)
