"""The one place an erasure's status changes: checked against the state machine
(vault/domain/erasures.py), guarded by the status the caller saw, and journaled as an
event row in the same transaction, together with the tenants' webhook event for a status
they hear about (completed, held, cancelled: vault/services/webhook_outbox.py). A new
instruction's event row, and that of a scheduled one extended when asked again, are
written by the request's own statement (dv_erasure_request, migration 0028), which
vault/services/erasures.py checks against the same state machine before it runs."""

from __future__ import annotations

import uuid

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus, InvalidTransition, check_transition
from vault.services.webhook_outbox import emit_erasure_status

Q = Queries("erasures")


async def transition(
    conn: Connection,
    tenant_id: uuid.UUID,
    erasure_id: uuid.UUID,
    current: ErasureStatus,
    new: ErasureStatus,
    *,
    api_key_id: uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Move the erasure from `current` to `new`. The caller holds the erasure's row lock;
    the guard on `current` turns a bug into an error instead of a silent overwrite."""
    check_transition(current, new)
    if current == new:  # a change within the status (extended, brake released): journaled
        await conn.execute(Q.event, tenant_id, erasure_id, current, new, api_key_id, detail)
        return
    changed = await conn.fetchval(
        Q.set_status, tenant_id, erasure_id, current, new, api_key_id, detail
    )
    if changed is None:
        raise InvalidTransition(f"erasure {erasure_id} was not {current}")
    await emit_erasure_status(conn, tenant_id, erasure_id, new)
