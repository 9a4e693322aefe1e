"""Idempotency-Key answers are kept 24 hours (API.md); this job deletes older ones."""

from __future__ import annotations

from vault.db.database import Database
from vault.db.sql import Queries
from vault.services.tenants import list_tenants

Q = Queries("idempotency")

IDEMPOTENCY_EXPIRY_INTERVAL_SECONDS = 600.0


async def expire_idempotency_keys(db: Database) -> int:
    """Delete answers older than 24 hours, tenant by tenant."""
    removed = 0
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            status = await conn.execute(Q.expire, tenant.id)
        removed += int(status.split()[-1])
    return removed
