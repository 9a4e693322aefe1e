"""Expired holds stop covering at once (dv_hold_in_force compares expires_at with now);
this job writes each expiry into the hold's journal within a minute."""

from __future__ import annotations

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.holds import HoldAction
from vault.services.tenants import list_tenants

Q = Queries("holds")

HOLD_EXPIRY_INTERVAL_SECONDS = 60.0


async def journal_expired_holds(db: Database) -> int:
    """Expired holds stop covering by themselves (the coverage check compares
    expires_at with now); this records the expiry in each hold's journal."""
    journaled = 0
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            for row in await conn.fetch(Q.newly_expired, tenant.id):
                await conn.execute(
                    Q.journal, tenant.id, row["id"], HoldAction.EXPIRED, None, None, None
                )
                journaled += 1
    return journaled
