"""The access-log hash chain: one canonical encoding of a row, hashed onto its predecessor.

The chain covers a keyed hash of the client IP, not the IP itself, so the IP column can
be truncated and later dropped (retention) while the chain still verifies.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DOMAIN = b"datavault.access-log.v1"


@dataclass(frozen=True)
class ChainedFields:
    tenant_id: uuid.UUID
    seq: int
    at: datetime
    request_id: str
    api_key_id: uuid.UUID | None
    key_prefix: str | None
    ip_hash: bytes
    method: str
    route: str
    status: int
    bytes_in: int
    bytes_out: int
    subject_ref_hash: bytes | None
    artefact_id: uuid.UUID | None


def _field(value: object) -> bytes:
    # Length-prefixed so no two different rows encode the same; None differs from "".
    if value is None:
        return b"\xff\xff\xff\xff"
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, int):
        data = struct.pack(">q", value)
    elif isinstance(value, datetime):
        # Microseconds since the epoch: PostgreSQL keeps exactly microseconds.
        data = struct.pack(">q", (value - _EPOCH) // timedelta(microseconds=1))
    else:
        data = str(value).encode("utf-8")
    return struct.pack(">I", len(data)) + data


def chain_digest(domain: bytes, prev_hash: bytes, values: Iterable[object]) -> bytes:
    """SHA-256 over the chain's domain, the previous row's hash and each value encoded by
    `_field`: the one row encoding of every hash chain the vault keeps (the access log
    here, disclosures in vault/domain/disclosures.py)."""
    digest = hashlib.sha256(domain)
    digest.update(prev_hash)
    for value in values:
        digest.update(_field(value))
    return digest.digest()


def row_hash(prev_hash: bytes, row: ChainedFields) -> bytes:
    return chain_digest(
        _DOMAIN,
        prev_hash,
        (
            row.tenant_id,
            row.seq,
            row.at,
            row.request_id,
            row.api_key_id,
            row.key_prefix,
            row.ip_hash,
            row.method,
            row.route,
            row.status,
            row.bytes_in,
            row.bytes_out,
            row.subject_ref_hash,
            row.artefact_id,
        ),
    )
