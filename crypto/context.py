"""The typed context every wrap and ciphertext is bound to, and its one encoding.

Callers never pass nonces or associated-data bytes: they describe *what* a key or
ciphertext is (purpose, tenant, subject, category, generation, key id, version) and this
module turns that into the associated data, one canonical way, so that anything moved to
another tenant, subject, category, generation or artefact fails to open.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from crypto.limits import MAX_CONTEXT_FIELD_BYTES

PURPOSE_TENANT_KEK: Final = "tenant-kek"
"""A tenant key-encryption key, wrapped by the root key."""
PURPOSE_TENANT_HMAC_KEY: Final = "tenant-hmac-key"
"""The per-tenant key that pseudonymises subject references, wrapped by the root key."""
PURPOSE_SUBJECT_KEY: Final = "subject-key"
"""A subject key (tenant, subject, category, generation), wrapped by the tenant KEK."""
PURPOSE_DATA_KEY: Final = "data-key"
"""A data key of one artefact or record version, wrapped by the subject key."""
PURPOSE_RECORD: Final = "record"
"""A small sealed record (crypto.records) under a data key."""
PURPOSE_ARTEFACT: Final = "artefact"
"""A streamed artefact (crypto.stream) under a data key."""
PURPOSE_DEPLOYMENT_SECRET: Final = "deployment-secret"  # noqa: S105 (a label, not a secret)
"""Deployment-wide secrets (receipt signing key, API key pepper) wrapped by the root key."""
PURPOSE_IDEMPOTENCY_REPLAY: Final = "idempotency-replay"
"""The stored first answer to a request with an Idempotency-Key (crypto/replay.py)."""

PURPOSES: Final = frozenset(
    {
        PURPOSE_TENANT_KEK,
        PURPOSE_TENANT_HMAC_KEY,
        PURPOSE_SUBJECT_KEY,
        PURPOSE_DATA_KEY,
        PURPOSE_RECORD,
        PURPOSE_ARTEFACT,
        PURPOSE_DEPLOYMENT_SECRET,
        PURPOSE_IDEMPOTENCY_REPLAY,
    }
)

CONTEXT_MAGIC: Final = b"DVKC\x01"
"""Domain tag and encoding version: no other datavault encoding starts with it."""

_U64_LIMIT: Final = 2**64


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What a key or ciphertext is. Fields left empty / zero are encoded too, so a context
    with a field set never equals one without it."""

    purpose: str
    tenant_id: str = ""
    subject_id: str = ""
    category: str = ""
    generation: int = 0
    key_id: str = ""
    version: int = 0

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {self.purpose!r}")
        for name in ("tenant_id", "subject_id", "category", "key_id"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"KeyContext.{name} must be a str")
            # strict UTF-8: lone surrogates raise here rather than encode ambiguously
            if len(value.encode("utf-8")) > MAX_CONTEXT_FIELD_BYTES:
                raise ValueError(f"KeyContext.{name} is longer than {MAX_CONTEXT_FIELD_BYTES}")
        for name in ("generation", "version"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < _U64_LIMIT:
                raise ValueError(f"KeyContext.{name} must be an int in [0, 2**64)")

    def encode(self) -> bytes:
        """The canonical associated data: magic, then each field in a fixed order, strings
        as 4-byte big-endian length + UTF-8, integers as 8-byte big-endian."""
        parts = [CONTEXT_MAGIC]
        for text in (self.purpose, self.tenant_id, self.subject_id, self.category):
            parts.append(_field(text))
        parts.append(struct.pack(">Q", self.generation))
        parts.append(_field(self.key_id))
        parts.append(struct.pack(">Q", self.version))
        return b"".join(parts)


def _field(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw
