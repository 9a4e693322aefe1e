"""Wrapping keys under keys (root → tenant KEK → subject key → data key).

Layout (FORMAT.md, "Key wrap"): 0xA1 ‖ salt (32) ‖ nonce (12) ‖ AES-256-GCM(key) ‖ tag (16).
"""

from __future__ import annotations

from typing import Final

from crypto import _message, _primitives
from crypto._primitives import RandomSource
from crypto.context import KeyContext
from crypto.errors import IntegrityError
from crypto.limits import KEY_SIZE
from crypto.secrets import SecretBytes, require_key

KEYWRAP_V1: Final = _message.MessageFormat(
    version=0xA1,
    key_label=b"datavault/keywrap/v1",
    commitment_label=None,
    # Keys belong to no object; DVKC 01 refuses a context that names one.
    associated_data=KeyContext.encode_v1,
)
WRAPPED_KEY_SIZE: Final = KEYWRAP_V1.overhead + KEY_SIZE


def wrap_key(wrapping_key: SecretBytes, key: SecretBytes, context: KeyContext) -> bytes:
    """Seal ``key`` under ``wrapping_key``, bound to ``context``."""
    return _wrap_key_with(wrapping_key, key, context, _primitives.random_bytes)


def unwrap_key(wrapping_key: SecretBytes, wrapped: bytes, context: KeyContext) -> SecretBytes:
    """Open a wrapped key; IntegrityError if it was altered or belongs to another context."""
    if len(wrapped) != WRAPPED_KEY_SIZE:
        raise IntegrityError()
    return SecretBytes(_message.open_(KEYWRAP_V1, wrapping_key, wrapped, context))


def rewrap_key(
    old_wrapping_key: SecretBytes,
    new_wrapping_key: SecretBytes,
    wrapped: bytes,
    context: KeyContext,
    new_context: KeyContext | None = None,
) -> bytes:
    """Move a wrapped key from one wrapping key to another (a new epoch, a new subject
    key) without handing its bytes to the caller: IntegrityError if `wrapped` does not
    open under the old key and `context`. `new_context` defaults to `context` (encoded
    once for both)."""
    if len(wrapped) != WRAPPED_KEY_SIZE:
        raise IntegrityError()
    aad = KEYWRAP_V1.associated_data(context)
    key = SecretBytes(_message.open_encoded(KEYWRAP_V1, old_wrapping_key, wrapped, aad))
    new_aad = aad if new_context is None else KEYWRAP_V1.associated_data(new_context)
    return _message.seal_encoded(KEYWRAP_V1, new_wrapping_key, key.reveal(), new_aad)


def _wrap_key_with(
    wrapping_key: SecretBytes, key: SecretBytes, context: KeyContext, rng: RandomSource
) -> bytes:
    # Deterministic randomness is injected only by the test vectors.
    return _message.seal(KEYWRAP_V1, wrapping_key, require_key(key), context, rng)
