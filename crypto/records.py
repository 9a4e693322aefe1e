"""Small records (account data, billing rows, metadata) sealed as one AEAD message.

Layout (FORMAT.md, "Record"):
0xB1 ‖ salt (32) ‖ commitment (32) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16).
The commitment is checked before decryption, so a record can never open under two keys.
"""

from __future__ import annotations

from typing import Final

from crypto import _message, _primitives
from crypto._primitives import RandomSource
from crypto.context import KeyContext
from crypto.secrets import SecretBytes

RECORD_V1: Final = _message.MessageFormat(
    version=0xB1,
    key_label=b"datavault/record/v1/key",
    commitment_label=b"datavault/record/v1/commitment",
)
RECORD_OVERHEAD: Final = RECORD_V1.overhead


def seal_record(data_key: SecretBytes, plaintext: bytes, context: KeyContext) -> bytes:
    """Encrypt one record under ``data_key``, bound to ``context``."""
    return _seal_record_with(data_key, plaintext, context, _primitives.random_bytes)


def open_record(data_key: SecretBytes, sealed: bytes, context: KeyContext) -> bytes:
    """Decrypt a record; IntegrityError on any alteration, wrong key or wrong context."""
    return _message.open_(RECORD_V1, data_key, sealed, context)


def _seal_record_with(
    data_key: SecretBytes, plaintext: bytes, context: KeyContext, rng: RandomSource
) -> bytes:
    return _message.seal(RECORD_V1, data_key, plaintext, context, rng)
