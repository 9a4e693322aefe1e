"""Helpers for key-hierarchy tests: an operator context on a database, subjects by hand."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from vault.db.database import Database
from vault.runtime import OperatorContext
from vault.services.artefacts import blob_key
from vault.services.key_rotation import RotationReport, rotate_tenant_kek
from vault.services.keyring import DataKey


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


async def new_data_key(
    ctx: OperatorContext,
    tenant_id: uuid.UUID,
    category: str = "recording",
    purpose: str = "artefact",
) -> tuple[uuid.UUID, DataKey]:
    """A new subject with one data key under its generation-1 subject key of `category`."""
    subject = await insert_subject(ctx.db, tenant_id)
    async with ctx.db.tenant_tx(tenant_id) as conn:
        ref = await ctx.keyring.subject_key_for_write(conn, tenant_id, subject, category, 1)
        return subject, await ctx.keyring.new_data_key(conn, ref, purpose)  # type: ignore[arg-type]


async def insert_artefact_row(
    ctx: OperatorContext, tenant_id: uuid.UUID, state: str, age: timedelta = timedelta(0)
) -> tuple[uuid.UUID, DataKey, str]:
    """An artefact row in `state` created `age` ago, as an upload or a delete leaves it
    (no blob is written here). Returns (artefact id, its data key, its blob key)."""
    subject, data_key = await new_data_key(ctx, tenant_id)
    artefact_id = uuid.uuid4()
    key = blob_key(tenant_id, subject, artefact_id, data_key.id)
    async with ctx.db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO artefacts (tenant_id, id, subject_id, category, generation, data_key_id,"
            " blob_key, state, content_type, segment_size, size, created_at, deleted_at)"
            " VALUES ($1, $2, $3, 'recording', 1, $4, $5, $6, 'video/mp4', 1048576,"
            " CASE WHEN $6 = 'deleted' THEN 10 END, now() - $7::interval,"
            " CASE WHEN $6 = 'deleted' THEN now() END)",
            tenant_id, artefact_id, subject, data_key.id, key, state, age,
        )  # fmt: skip
    return artefact_id, data_key, key


async def rotation_outcome(
    ctx: OperatorContext, tenant_id: uuid.UUID
) -> RotationReport | Exception:
    """A KEK rotation of the tenant run to its end: its report, or what it raised (a race
    test looks at which, e.g. a deadlock PostgreSQL broke by aborting it)."""
    try:
        return await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant_id)
    except Exception as exc:  # what it raised is what is looked at
        return exc
