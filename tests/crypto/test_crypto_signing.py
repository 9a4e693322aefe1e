"""Ed25519 receipt signatures."""

from __future__ import annotations

import pytest

from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes
from crypto.signing import generate_signing_key, public_key, sign, verify

# RFC 8032, section 7.1, TEST 1 (empty message).
RFC_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_signature_matches_rfc_8032_vector() -> None:
    key = SecretBytes(bytes.fromhex(RFC_SEED))
    assert public_key(key).hex() == RFC_PUBLIC
    assert sign(key, b"").hex() == RFC_SIGNATURE
    verify(bytes.fromhex(RFC_PUBLIC), bytes.fromhex(RFC_SIGNATURE), b"")


def test_signature_verifies_only_for_its_message_and_key() -> None:
    key = generate_signing_key()
    signature = sign(key, b'{"erasure_id":"e-1"}')
    verify(public_key(key), signature, b'{"erasure_id":"e-1"}')
    with pytest.raises(IntegrityError):
        verify(public_key(key), signature, b'{"erasure_id":"e-2"}')
    with pytest.raises(IntegrityError):
        verify(public_key(generate_signing_key()), signature, b'{"erasure_id":"e-1"}')
    with pytest.raises(IntegrityError):
        verify(public_key(key)[:31], signature, b'{"erasure_id":"e-1"}')


def test_signing_key_is_masked() -> None:
    assert "redacted" in repr(generate_signing_key())
