"""Tenant closure: requested by an admin, cancellable until the closure delay has passed.
The destruction itself is the job in workers/closure.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.db.database import Database
from vault.db.sql import Queries
from vault.errors import Conflict, InvalidInput
from vault.services.ledger_controls import ACTIVE, CLOSING, record_closure
from vault.services.webhook_outbox import emit_closure_scheduled

Q = Queries("closure")

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
        closure_due_at = await conn.fetchval(Q.request, tenant_id, due, api_key_id, reason)
        if closure_due_at is None:
            raise Conflict("the tenant is already closing or closed")
        await emit_closure_scheduled(conn, tenant_id, closure_due_at, api_key_id)
        state = dict(await conn.fetchrow(Q.state, tenant_id) or {})
        # A restored backup must not forget it (vault/services/ledger_controls.py).
        await record_closure(
            conn, tenant_id, CLOSING, state["closure_requested_at"], closure_due_at, api_key_id
        )
        return state


async def cancel_closure(db: Database, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_tx(tenant_id) as conn:
        requested_at = await conn.fetchval(Q.cancel, tenant_id)
        if requested_at is None:
            raise Conflict("there is no closure to cancel, or its delay has passed")
        # Cancelled by the tenant: a restored backup must not run it after all.
        await record_closure(conn, tenant_id, ACTIVE, requested_at, None, None)
        return dict(await conn.fetchrow(Q.state, tenant_id) or {})
