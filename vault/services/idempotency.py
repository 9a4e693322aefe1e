"""Idempotency-Key bookkeeping (API.md Conventions): claim, answer, release, expire.

Rows hold only HMACs and a sealed answer (crypto/replay.py); what they mean is known only
to a caller presenting the API key's secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from vault.db.database import Database
from vault.db.sql import Queries

Q = Queries("idempotency")


@dataclass(frozen=True)
class IdempotencyRow:
    """Another request already holds this Idempotency-Key."""

    fingerprint: bytes
    status: int | None  # None: that request is still running
    answer_sealed: bytes | None


@dataclass(frozen=True)
class KeySlot:
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    key_id: bytes


async def claim(db: Database, slot: KeySlot, fingerprint: bytes) -> IdempotencyRow | None:
    """None when this request now holds the key; else the row that stands."""
    async with db.tenant_tx(slot.tenant_id) as conn:
        claimed = await conn.fetchval(
            Q.claim, slot.tenant_id, slot.api_key_id, slot.key_id, fingerprint
        )
        if claimed is not None:
            return None
        row = await conn.fetchrow(Q.existing, slot.tenant_id, slot.api_key_id, slot.key_id)
    if row is None:  # released between the two statements: the caller may retry
        return IdempotencyRow(fingerprint, None, None)
    sealed = row["answer_sealed"]
    return IdempotencyRow(
        bytes(row["fingerprint"]), row["status"], bytes(sealed) if sealed is not None else None
    )


async def store_answer(db: Database, slot: KeySlot, status: int, sealed: bytes) -> None:
    async with db.tenant_tx(slot.tenant_id) as conn:
        await conn.execute(
            Q.store_answer, slot.tenant_id, slot.api_key_id, slot.key_id, status, sealed
        )


async def release(db: Database, slot: KeySlot) -> None:
    async with db.tenant_tx(slot.tenant_id) as conn:
        await conn.execute(Q.release, slot.tenant_id, slot.api_key_id, slot.key_id)
