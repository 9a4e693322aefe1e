"""The one place an erasure's status changes: checked against the state machine
(vault/domain/erasures.py), guarded by the status the caller saw, and journaled as an
event row in the same transaction, together with the tenants' webhook event for a status
they hear about (completed, held, cancelled: vault/services/webhook_outbox.py). A new
instruction's event row, and that of a scheduled one extended when asked again, are
written by the request's own statement (dv_erasure_request, migration 0028), which
vault/services/erasures.py checks against the same state machine before it runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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
    if current == new:  # a change within the status (extended, brake released): journaled
        check_transition(current, new)
        await conn.execute(Q.event, tenant_id, erasure_id, current, new, api_key_id, detail)
        return
    await transition_many(
        conn, tenant_id, [erasure_id], current, new, api_key_id=api_key_id, detail=detail
    )


async def transition_many(
    conn: Connection,
    tenant_id: uuid.UUID,
    erasure_ids: Sequence[uuid.UUID],
    current: ErasureStatus,
    new: ErasureStatus,
    *,
    api_key_id: uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Move each erasure from `current` to a different status `new` in one statement (the
    executor moves a batch at once); as `transition`, for all of them or none."""
    check_transition(current, new)
    changed = await conn.fetch(
        Q.set_status, tenant_id, list(erasure_ids), current, new, api_key_id, detail
    )
    if len(changed) != len(set(erasure_ids)):
        moved = {row["erasure_id"] for row in changed}
        missed = next(e for e in erasure_ids if e not in moved)
        raise InvalidTransition(f"erasure {missed} was not {current}")
    await emit_erasure_status(conn, tenant_id, erasure_ids, new)
