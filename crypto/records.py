"""Small records (account data, billing rows, metadata) sealed as one AEAD message.

Layout (FORMAT.md, "Record"):
version ‖ salt (32) ‖ commitment (32) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16).
The commitment is checked before decryption, so a record can never open under two keys.
New records are `B2`, whose associated data (`DVKC 02`) names the object the record
belongs to; `B1` records, written before, bind no object and still open.
"""

from __future__ import annotations

from typing import Final

from crypto import _message, _primitives
from crypto._primitives import RandomSource
from crypto.context import KeyContext
from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes

RECORD_V1: Final = _message.MessageFormat(
    version=0xB1,
    key_label=b"datavault/record/v1/key",
    commitment_label=b"datavault/record/v1/commitment",
    # Written before contexts named objects: read with the object left out.
    associated_data=KeyContext.encode_v1_ignoring_object,
)
RECORD_V2: Final = _message.MessageFormat(
    version=0xB2,
    key_label=b"datavault/record/v2/key",
    commitment_label=b"datavault/record/v2/commitment",
    associated_data=KeyContext.encode_v2,
)
RECORD_OVERHEAD: Final = RECORD_V2.overhead
_READERS: Final = {fmt.version: fmt for fmt in (RECORD_V1, RECORD_V2)}


def seal_record(data_key: SecretBytes, plaintext: bytes, context: KeyContext) -> bytes:
    """Encrypt one record under ``data_key``, bound to ``context`` (object included)."""
    return _seal_record_with(data_key, plaintext, context, _primitives.random_bytes)


def open_record(data_key: SecretBytes, sealed: bytes, context: KeyContext) -> bytes:
    """Decrypt a record; IntegrityError on any alteration, wrong key or wrong context.
    The record's version byte says which encoding of ``context`` it was sealed with."""
    fmt = _READERS.get(sealed[0]) if sealed else None
    if fmt is None:
        raise IntegrityError()
    return _message.open_(fmt, data_key, sealed, context)


def _seal_record_with(
    data_key: SecretBytes,
    plaintext: bytes,
    context: KeyContext,
    rng: RandomSource,
    fmt: _message.MessageFormat = RECORD_V2,
) -> bytes:
    # Deterministic randomness and older formats are asked for only by the test vectors.
    return _message.seal(fmt, data_key, plaintext, context, rng)
