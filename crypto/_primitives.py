"""The only module that touches ``cryptography.hazmat``.

Small, boring wrappers: AES-256-GCM with one error type, HKDF-SHA256, HMAC-SHA256,
Ed25519 and the CSPRNG. Everything above it composes these into versioned formats.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import IntegrityError
from crypto.limits import GCM_TAG_SIZE

RandomSource = Callable[[int], bytes]
"""A source of random bytes; tests inject a deterministic one to produce vectors."""

Buffer = bytes | bytearray | memoryview


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


_SHA256_SIZE = 32


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    if 0 < length <= _SHA256_SIZE:
        # RFC 5869 with one output block, by two one-shot HMACs: the same bytes as the
        # HKDF object below (the vectors check both), at a third of its cost, which
        # matters where every key is rewrapped for a new epoch.
        prk = hmac.digest(salt or bytes(_SHA256_SIZE), ikm, "sha256")
        return hmac.digest(prk, info + b"\x01", "sha256")[:length]
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    # One-shot, without an HMAC object (~13% less here); every request computes a few:
    # its API key's, its subject reference's, its address's.
    return hmac.digest(key, data, "sha256")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class Aead:
    """AES-256-GCM under one key; construct once per key and reuse (the key schedule is
    the expensive part of construction)."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._key = key

    def seal(self, nonce: bytes, plaintext: Buffer, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def seal_parts(self, nonce: bytes, parts: Sequence[Buffer], aad: bytes) -> bytearray:
        """`seal` of the parts' concatenation, the same bytes (ciphertext, then the tag),
        without joining them first: each part is encrypted straight into the output
        (GCM is a stream mode), so a plaintext that arrived in pieces is not copied
        once more to be sealed (issue 19, sixth round)."""
        total = sum(len(memoryview(part)) for part in parts)
        encryptor = Cipher(algorithms.AES(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        # update_into wants room for a block more than it is given: the tag's 16 bytes
        # at the end are that room for the last part.
        sealed = bytearray(total + GCM_TAG_SIZE)
        out = memoryview(sealed)
        written = 0
        for part in parts:
            written += encryptor.update_into(part, out[written:])
        encryptor.finalize()
        out[written:] = encryptor.tag
        return sealed

    def open(self, nonce: bytes, ciphertext: Buffer, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise IntegrityError() from None


def ed25519_generate() -> bytes:
    """A new Ed25519 private key as its 32-byte raw seed."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def ed25519_public_key(private_seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(private_seed)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_sign(private_seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private_seed).sign(message)


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise IntegrityError("signature verification failed") from None
