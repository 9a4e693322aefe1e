"""The typed context every wrap and ciphertext is bound to, and its canonical encodings.

Callers never pass nonces or associated-data bytes: they describe *what* a key or
ciphertext is (purpose, tenant, subject, category, generation, key id, version and, for
content, the object it belongs to) and this module turns that into the associated data,
one canonical way per encoding version, so that anything moved to another tenant,
subject, category, generation, key, artefact or record fails to open.

Two encodings (FORMAT.md): `DVKC 01` has no object field; key wraps use it, and so did
records and streams before `B2`/`C2`. `DVKC 02` adds the object, always present (`B2`,
`C2`, `C3`). Which one a ciphertext's associated data is follows from the ciphertext's
own version byte.
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
PURPOSE_WEBHOOK_SECRET: Final = "webhook-secret"  # noqa: S105 (a label, not a secret)
"""A webhook endpoint's signing secret, wrapped by the tenant KEK (crypto/webhooks.py)."""

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
        PURPOSE_WEBHOOK_SECRET,
    }
)

OBJECT_RECORD: Final = "record"
"""One version of a record: name = the record's name, version = its version number."""
OBJECT_ARTEFACT: Final = "artefact"
"""One artefact (its stream and its sealed metadata): name = the artefact id."""
OBJECT_SUBJECT: Final = "subject"
"""A subject's own sealed values (reference copy, restriction reason): name = its id."""

OBJECT_KINDS: Final = frozenset({OBJECT_RECORD, OBJECT_ARTEFACT, OBJECT_SUBJECT})

CONTEXT_MAGIC_V1: Final = b"DVKC\x01"
"""Domain tag and encoding version: no other datavault encoding starts with it."""
CONTEXT_MAGIC_V2: Final = b"DVKC\x02"
"""The same, for the encoding with the object field."""

_U64_LIMIT: Final = 2**64
_U64: Final = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """Which stored object a ciphertext is: the row that names it, not the key that opens
    it. Two objects of one subject (two records, two versions of one record, two
    artefacts) have different identities, so a ciphertext moved from one to the other
    with its data key fails to open."""

    kind: str
    name: str
    version: int = 0

    def __post_init__(self) -> None:
        if self.kind not in OBJECT_KINDS:
            raise ValueError(f"unknown object kind {self.kind!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ObjectIdentity.name must be a non-empty str")
        if len(self.name.encode("utf-8")) > MAX_CONTEXT_FIELD_BYTES:
            raise ValueError(f"ObjectIdentity.name is longer than {MAX_CONTEXT_FIELD_BYTES}")
        if type(self.version) is not int or not 0 <= self.version < _U64_LIMIT:
            raise ValueError("ObjectIdentity.version must be an int in [0, 2**64)")


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
    object_identity: ObjectIdentity | None = None
    """The object a ciphertext belongs to (content only; keys have none)."""

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
        if self.object_identity is not None and not isinstance(
            self.object_identity, ObjectIdentity
        ):
            raise TypeError("KeyContext.object_identity must be an ObjectIdentity")

    def encode_v1(self) -> bytes:
        """`DVKC 01`, the associated data of key wraps: magic, then each field in a fixed
        order, strings as 4-byte big-endian length + UTF-8, integers as 8-byte big-endian.
        It has no object field, so a context that names an object is refused rather than
        encoded as if it named none."""
        if self.object_identity is not None:
            raise ValueError("DVKC 01 cannot bind an object: use encode_v2")
        return self._encode(CONTEXT_MAGIC_V1)

    def encode_v1_ignoring_object(self) -> bytes:
        """`DVKC 01` of the other fields, whatever object this context names: the
        associated data of records (`B1`) and streams (`C1`) written before objects were
        bound. Only their readers use it; nothing new is written this way."""
        return self._encode(CONTEXT_MAGIC_V1)

    def encode_v2(self) -> bytes:
        """`DVKC 02`: the `DVKC 01` fields, then the object (kind, name, version), always
        present: a context without one encodes an empty kind and name and version 0,
        which no ObjectIdentity equals (its kind and name are never empty)."""
        obj = self.object_identity
        tail = (
            _field("") + _field("") + _U64.pack(0)
            if obj is None
            else _field(obj.kind) + _field(obj.name) + _U64.pack(obj.version)
        )
        return self._encode(CONTEXT_MAGIC_V2) + tail

    def _encode(self, magic: bytes) -> bytes:
        parts = [magic]
        for text in (self.purpose, self.tenant_id, self.subject_id, self.category):
            parts.append(_field(text))
        parts.append(_U64.pack(self.generation))
        parts.append(_field(self.key_id))
        parts.append(_U64.pack(self.version))
        return b"".join(parts)


def _field(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw
