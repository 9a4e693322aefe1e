"""Stored answers for Idempotency-Key replays (API.md Conventions), under the caller's key.

A repeated request with the same Idempotency-Key must get the first answer back, so the
vault keeps that answer for 24 hours. Answers can carry a subject reference, a filename
or a new API key's secret, so the stored copy is sealed under a key derived from the
presented API key secret, which the vault itself never stores: a copy of the database
opens no stored answer. The row names its request only by HMACs under a second key
derived from the same secret, so neither a guessable Idempotency-Key nor the request
(whose path holds the subject reference) can be confirmed from the database either.

Keys: HKDF-SHA256(ikm = the presented secret, salt = empty, info = label ‖ tenant id ‖
API key id); the secret is a 256-bit random token or an own secret of at least 128
estimated bits, so no salt is needed to stretch it. The answer is a Record v1 (`B1`)
message under the seal key, with its own random salt and commitment (FORMAT.md).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import Final

from crypto import _primitives
from crypto.context import PURPOSE_IDEMPOTENCY_REPLAY, KeyContext
from crypto.records import open_record, seal_record
from crypto.secrets import SecretBytes

_ID_LABEL: Final = b"datavault/replay/v1/id"
_SEAL_LABEL: Final = b"datavault/replay/v1/seal"


class ReplaySealer:
    """Everything the vault stores about one API key's idempotent requests, keyed by it."""

    __slots__ = ("_id_key", "_seal_key", "_tenant_id")

    def __init__(self, api_key_secret: str, tenant_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
        ikm = api_key_secret.encode("utf-8")
        binding = tenant_id.bytes + api_key_id.bytes
        self._id_key = SecretBytes(_primitives.hkdf_sha256(ikm, b"", _ID_LABEL + binding, 32))
        self._seal_key = SecretBytes(_primitives.hkdf_sha256(ikm, b"", _SEAL_LABEL + binding, 32))
        self._tenant_id = str(tenant_id)

    def key_id(self, idempotency_key: str) -> bytes:
        """What the row is looked up by instead of the Idempotency-Key itself."""
        return self._mac(b"key", [idempotency_key.encode("utf-8")])

    def fingerprint(self, parts: Sequence[bytes]) -> bytes:
        """Equal for the same request (method, path, query, headers, body digest)."""
        return self._mac(b"request", parts)

    def seal(self, answer: bytes, key_id: bytes) -> bytes:
        return seal_record(self._seal_key, answer, self._context(key_id))

    def open(self, sealed: bytes, key_id: bytes) -> bytes:
        """IntegrityError when sealed under another API key, tenant or Idempotency-Key."""
        return open_record(self._seal_key, sealed, self._context(key_id))

    def _context(self, key_id: bytes) -> KeyContext:
        return KeyContext(
            PURPOSE_IDEMPOTENCY_REPLAY, tenant_id=self._tenant_id, key_id=key_id.hex()
        )

    def _mac(self, kind: bytes, parts: Sequence[bytes]) -> bytes:
        # Length-prefixed, so no two different part lists encode alike.
        message = kind + b"".join(struct.pack(">I", len(part)) + part for part in parts)
        return _primitives.hmac_sha256(self._id_key.reveal(), message)
