"""Tenant closure: after the closure delay, destroy every key of the tenant that no hold
keeps; once nothing is kept, the tenant KEK and HMAC key too, and the tenant is closed
(its API keys stop working). Cancellable until the delay has passed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.db.database import Database
from vault.db.sql import Queries
from vault.errors import Conflict, InvalidInput
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants

Q = Queries("closure")

CLOSURE_INTERVAL_SECONDS = 60.0
MAX_REASON = 1000


async def request_closure(
    db: Database,
    tenant_id: uuid.UUID,
    api_key_id: uuid.UUID,
    reason: str,
    delay: timedelta,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Schedule the tenant's closure `delay` from now (DATAVAULT_CLOSURE_DELAY_DAYS)."""
    if not reason or len(reason) > MAX_REASON:
        raise InvalidInput(f"reason must be 1-{MAX_REASON} characters", field="reason")
    due = (now or datetime.now(UTC)) + delay
    async with db.tenant_tx(tenant_id) as conn:
        if await conn.fetchval(Q.request, tenant_id, due, api_key_id, reason) is None:
            raise Conflict("the tenant is already closing or closed")
        return dict(await conn.fetchrow(Q.state, tenant_id) or {})


async def cancel_closure(db: Database, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_tx(tenant_id) as conn:
        if await conn.fetchval(Q.cancel, tenant_id) is None:
            raise Conflict("there is no closure to cancel, or its delay has passed")
        return dict(await conn.fetchrow(Q.state, tenant_id) or {})


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
                destroyed, held = await keyring.destroy_subject_keys(
                    conn, tenant.id, row["subject_id"], row["generation"]
                )
                for key in destroyed:
                    await conn.execute(
                        Q.outbox, tenant.id, "subject", str(key.id), key.destroyed_at
                    )
                kept = kept or bool(held)
            if kept:
                continue  # holds keep part of it; the KEK must stay to open what is kept
            for kek in await conn.fetch(Q.destroy_keks, tenant.id):
                await conn.execute(
                    Q.outbox, tenant.id, "kek", str(kek["version"]), kek["destroyed_at"]
                )
            await notify_kek_destroyed(conn, tenant.id)
            hmac_destroyed = await conn.fetchval(Q.destroy_hmac_key, tenant.id)
            if hmac_destroyed is not None:
                await conn.execute(Q.outbox, tenant.id, "hmac", str(tenant.id), hmac_destroyed)
            await conn.execute(Q.closed, tenant.id)
        keyring.keks.drop(tenant.id)
        closed += 1
    return closed
