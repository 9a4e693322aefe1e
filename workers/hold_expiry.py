"""Expired holds stop covering at once (dv_hold_in_force compares expires_at with now);
this job writes each expiry into the hold's journal within a minute, with its
`hold.expired` webhook event in the same transaction."""

from __future__ import annotations

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.holds import HoldAction
from vault.observability import events
from vault.services.holds import journal
from vault.services.tenants import list_tenants
from vault.services.wakeups import ERASURES_DUE, notify
from vault.services.webhook_outbox import emit_hold_expired

Q = Queries("holds")

HOLD_EXPIRY_INTERVAL_SECONDS = 60.0


async def journal_expired_holds(db: Database) -> int:
    """Record each newly expired hold in its journal (and the server log, after commit)."""
    journaled = 0
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            rows = await conn.fetch(Q.newly_expired, tenant.id)
            for row in rows:
                await journal(conn, tenant.id, row["id"], HoldAction.EXPIRED, None, None)
                await emit_hold_expired(conn, tenant.id, row)
            expired = [row["id"] for row in rows]
            if expired:
                # Erasures it kept are retried now (their executor pass would anyway).
                await notify(conn, ERASURES_DUE, tenant.id)
        for hold_id in expired:
            events.hold_expired(tenant.id, hold_id)
        journaled += len(expired)
    return journaled
