"""Tenant closure, when due: destroy every key of the tenant that no hold keeps; once
nothing is kept, the tenant KEK versions and the HMAC key too, and the tenant is closed
(its API keys stop working). Every destroyed key gets its shred-ledger row from the
function that destroys it (migration 0016)."""

from __future__ import annotations

from datetime import UTC, datetime

from vault.db.database import Database
from vault.db.sql import Queries
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants

Q = Queries("closure")

CLOSURE_INTERVAL_SECONDS = 60.0


async def run_due_closures(db: Database, keyring: KeyRing, now: datetime | None = None) -> int:
    """Shred due closures; return how many tenants were closed for good this pass."""
    closed = 0
    for tenant in await list_tenants(db):
        if tenant.status != "closing":
            continue
        async with db.tenant_tx(tenant.id) as conn:
            if await conn.fetchrow(Q.due, tenant.id, now or datetime.now(UTC)) is None:
                continue
            kept = False
            for row in await conn.fetch(Q.live_generations, tenant.id):
                _, held = await keyring.destroy_subject_keys(
                    conn, tenant.id, row["subject_id"], row["generation"]
                )
                kept = kept or bool(held)
            if kept:
                continue  # holds keep part of it; the KEK must stay to open what is kept
            await conn.fetch(Q.destroy_keks, tenant.id)
            await notify_kek_destroyed(conn, tenant.id)
            await conn.fetchval(Q.destroy_hmac_key, tenant.id)
            await conn.execute(Q.closed, tenant.id)
        keyring.keks.drop(tenant.id)
        closed += 1
    return closed
