"""Helpers for key-hierarchy tests: an operator context on a database, subjects by hand."""

from __future__ import annotations

import os
import uuid

from vault.db.database import Database


async def insert_subject(db: Database, tenant_id: uuid.UUID) -> uuid.UUID:
    """A subject row as artefact storage will create it (ref hash here is random)."""
    subject_id = uuid.uuid4()
    async with db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO subjects (tenant_id, id, ref_hash) VALUES ($1, $2, $3)",
            tenant_id,
            subject_id,
            os.urandom(32),
        )
    return subject_id
