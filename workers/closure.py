"""Tenant closure, when due: destroy every key of the tenant that no hold keeps; once
nothing is kept, the tenant KEK versions and the HMAC key too, and the tenant is closed
(its API keys stop working). Every destroyed key gets its shred-ledger row from the
function that destroys it (migration 0016)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import structlog

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants

Q = Queries("closure")
log = structlog.get_logger()

CLOSURE_INTERVAL_SECONDS = 60.0


async def run_due_closures(db: Database, keyring: KeyRing, now: datetime | None = None) -> int:
    """Shred due closures; return how many tenants were closed for good this pass."""
    closed = 0
    for tenant in await list_tenants(db):
        if tenant.status != "closing":
            continue
        try:
            if not await _close_if_due(db, keyring, tenant.id, now or datetime.now(UTC)):
                continue
        except asyncpg.TransactionRollbackError as exc:
            # PostgreSQL broke a lock cycle with a request (a hold placed on a subject the
            # closure reached for at that moment) by aborting this tenant's closure:
            # nothing of it committed; the next pass does it. The others go on now.
            log.warning("closure_deferred", tenant_id=str(tenant.id), error_type=type(exc).__name__)
            continue
        keyring.keks.drop(tenant.id)
        closed += 1
    return closed


async def _close_if_due(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime
) -> bool:
    """Whether the tenant was closed for good now."""
    async with db.tenant_tx(tenant_id) as conn:
        if await conn.fetchrow(Q.due, tenant_id, now) is None:
            return False
        _, kept = await destroy_tenant_keys(conn, keyring, tenant_id)
        if kept:
            return False  # holds keep part of it; the KEK must stay to open what is kept
        await conn.execute(Q.closed, tenant_id)
    return True


async def finish_restored_closure(conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID) -> int:
    """At start-up, in the caller's transaction: a tenant the restored database has as
    closed (the shred ledger's replay closed it again) that still holds live keys gets the
    closure's own destruction now, before anything is served. A backup from a line of
    history an earlier restore abandoned holds keys the closing line never had (a KEK
    version rotated in there, subject keys written there): the ledger never named them.
    Returns how many keys were destroyed (each with its ledger row)."""
    if await conn.fetchrow(Q.closed_with_live_keys, tenant_id) is None:
        return 0
    destroyed, _ = await destroy_tenant_keys(conn, keyring, tenant_id)
    keyring.keks.drop(tenant_id)
    return destroyed


async def destroy_tenant_keys(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID
) -> tuple[int, bool]:
    """The closure's destruction: every subject key no hold keeps; then, if nothing was
    kept, every KEK version and the HMAC key. Returns (keys destroyed, whether a hold
    kept something).

    A writer creating a subject key while this runs (the first write to a subject none of
    whose keys is live: this never locks its row) wraps it under a live KEK version it
    holds FOR SHARE until it commits. So once the listed keys are destroyed, the live KEK
    versions are locked FOR UPDATE, which waits such writers out and holds new ones back,
    and what they made is destroyed too (red team 18: the KEK was destroyed past it, the
    new key left live in a closed tenant). Locked after the subjects, as writers lock a
    subject before its KEK (keyring.subject_key_for_write): no cycle with a writer."""
    destroyed, kept = await _destroy_live_subject_keys(conn, keyring, tenant_id)
    if kept:
        return destroyed, True
    await conn.execute(Q.lock_live_keks, tenant_id)
    made_meanwhile, kept = await _destroy_live_subject_keys(conn, keyring, tenant_id)
    destroyed += made_meanwhile
    if kept:
        return destroyed, True
    destroyed += len(await conn.fetch(Q.destroy_keks, tenant_id))
    await notify_kek_destroyed(conn, tenant_id)
    destroyed += await conn.fetchval(Q.destroy_hmac_key, tenant_id) is not None
    return destroyed, False


async def _destroy_live_subject_keys(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID
) -> tuple[int, bool]:
    destroyed, kept = 0, False
    for row in await conn.fetch(Q.live_generations, tenant_id):
        gone, held = await keyring.destroy_subject_keys(
            conn, tenant_id, row["subject_id"], row["generation"]
        )
        destroyed += len(gone)
        kept = kept or bool(held)
    return destroyed, kept
