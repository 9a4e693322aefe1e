"""HKDF-SHA256 (RFC 5869) as the formats use it: the fast one-block path gives exactly the
bytes of the `cryptography` HKDF it replaced, for every length and salt the formats ask
for, so no wrapped key or ciphertext changes."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto._primitives import hkdf_sha256


@pytest.mark.parametrize("length", [1, 16, 31, 32, 33, 64])
# Ids for the random salts: xdist workers each collect the suite and must agree on them.
@pytest.mark.parametrize(
    "salt",
    [b"", bytes(32), b"s", os.urandom(32), os.urandom(80)],
    ids=["empty", "zeros-32", "s", "random-32", "random-80"],
)
def test_hkdf_matches_the_reference(length: int, salt: bytes) -> None:
    ikm, info = os.urandom(32), b"datavault/keywrap/v1"
    reference = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info)
    assert hkdf_sha256(ikm, salt, info, length) == reference.derive(ikm)


def test_rfc_5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, salt, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
