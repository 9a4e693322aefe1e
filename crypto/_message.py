"""One-shot AEAD messages under a per-message derived key (shared by keywrap and records).

    version (1) ‖ salt (32) ‖ [commitment (32)] ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag)

The AES key is HKDF-SHA256(ikm=key, salt=fresh random salt, info=format label), used for
exactly one message, so the number of messages under a long-lived key never meets AES-GCM's
random-nonce bound. The associated data is the KeyContext encoding the format names
(`DVKC 01` or `DVKC 02`). The format label carries the version, so changing the version
byte changes the key and fails too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crypto import _primitives
from crypto._primitives import Aead, RandomSource
from crypto.context import KeyContext
from crypto.errors import IntegrityError
from crypto.limits import COMMITMENT_SIZE, GCM_NONCE_SIZE, GCM_TAG_SIZE, KEY_SIZE, SALT_SIZE
from crypto.secrets import SecretBytes, require_key


@dataclass(frozen=True, slots=True)
class MessageFormat:
    version: int
    key_label: bytes
    commitment_label: bytes | None  # None: no commitment field
    associated_data: Callable[[KeyContext], bytes]  # which KeyContext encoding

    @property
    def overhead(self) -> int:
        commitment = COMMITMENT_SIZE if self.commitment_label is not None else 0
        return 1 + SALT_SIZE + commitment + GCM_NONCE_SIZE + GCM_TAG_SIZE


def seal(
    fmt: MessageFormat,
    key: SecretBytes,
    plaintext: bytes,
    context: KeyContext,
    rng: RandomSource = _primitives.random_bytes,
) -> bytes:
    return seal_encoded(fmt, key, plaintext, fmt.associated_data(context), rng)


def seal_encoded(
    fmt: MessageFormat,
    key: SecretBytes,
    plaintext: bytes,
    aad: bytes,
    rng: RandomSource = _primitives.random_bytes,
) -> bytes:
    """`seal` with the context already encoded as the format encodes it (for callers in
    crypto/ that open and seal under one context: it is encoded once)."""
    ikm = require_key(key)
    salt = rng(SALT_SIZE)
    nonce = rng(GCM_NONCE_SIZE)
    message_key, commitment = _derive(fmt, ikm, salt)
    sealed = Aead(message_key).seal(nonce, plaintext, aad)
    return b"".join((bytes([fmt.version]), salt, commitment, nonce, sealed))


def open_(fmt: MessageFormat, key: SecretBytes, blob: bytes, context: KeyContext) -> bytes:
    return open_encoded(fmt, key, blob, fmt.associated_data(context))


def open_encoded(fmt: MessageFormat, key: SecretBytes, blob: bytes, aad: bytes) -> bytes:
    """`open_` with the context already encoded."""
    ikm = require_key(key)
    if len(blob) < fmt.overhead or blob[0] != fmt.version:
        raise IntegrityError()
    view = memoryview(blob)
    salt = bytes(view[1 : 1 + SALT_SIZE])
    at = 1 + SALT_SIZE
    message_key, commitment = _derive(fmt, ikm, salt)
    if commitment:
        # Checked before decryption: a ciphertext must not open under two different keys.
        if not _primitives.constant_time_equal(commitment, bytes(view[at : at + len(commitment)])):
            raise IntegrityError()
        at += len(commitment)
    nonce = bytes(view[at : at + GCM_NONCE_SIZE])
    return Aead(message_key).open(nonce, view[at + GCM_NONCE_SIZE :], aad)


def _derive(fmt: MessageFormat, ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    message_key = _primitives.hkdf_sha256(ikm, salt, fmt.key_label, KEY_SIZE)
    if fmt.commitment_label is None:
        return message_key, b""
    return message_key, _primitives.hkdf_sha256(ikm, salt, fmt.commitment_label, COMMITMENT_SIZE)
