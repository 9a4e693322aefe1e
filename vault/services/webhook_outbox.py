"""The webhook outbox: each state change a tenant hears about writes its event here, in the
caller's transaction, with one delivery per subscribed endpoint (migration 0021). A change
that rolls back takes its event with it; one that commits cannot lose it.

Payloads are built from typed ids, statuses, categories and times only (API.md
"Webhooks"). They never carry a subject reference, and, stricter than API.md, not its
keyed hash either: a payload leaves the vault for systems outside its deletion guarantee
(receivers' logs and queues), where a stable pseudonym of the person would outlive the
erasure it reports. The erasure id is what a receiver correlates by; `GET
/v1/erasures/{id}` gives the hash to whoever may read it (docs/webhooks.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus
from vault.domain.webhooks import TEST_EVENT_TYPE, EventType

Q = Queries("webhooks")
E = Queries("erasures")

# The erasure statuses whose arrival is an event.
ERASURE_EVENTS: dict[ErasureStatus, EventType] = {
    ErasureStatus.COMPLETED: EventType.ERASURE_COMPLETED,
    ErasureStatus.HELD: EventType.ERASURE_HELD,
    ErasureStatus.CANCELLED: EventType.ERASURE_CANCELLED,
}


def _time(value: datetime | None) -> str | None:
    """RFC 3339 UTC ending in Z (API.md, Conventions)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> str:
    """The JSON every attempt of the event sends, byte for byte: `{type, timestamp, data}`."""
    return json.dumps(
        {"type": event_type, "timestamp": _time(occurred_at), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )


async def emit(
    conn: Connection, tenant_id: uuid.UUID, event_type: EventType, ordering_key: str,
    data: dict[str, Any], occurred_at: datetime | None = None,
) -> uuid.UUID | None:  # fmt: skip
    """Queue the event for every live endpoint of the tenant subscribed to its type; the
    event's id (the deliveries' webhook-id), or None when no endpoint subscribes."""
    event_id = uuid.uuid4()
    occurred_at = occurred_at or datetime.now(UTC)
    body = encode_body(event_type, occurred_at, {"tenant_id": str(tenant_id), **data})
    rows = await conn.fetch(
        Q.insert_event, tenant_id, event_id, event_type.value, ordering_key, body, occurred_at
    )
    return event_id if rows else None


async def emit_test(
    conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """A `webhook.test` event for one endpoint; its delivery id, None if there is no such
    live endpoint."""
    event_id = uuid.uuid4()
    data = {"tenant_id": str(tenant_id), "webhook_id": str(endpoint_id)}
    body = encode_body(TEST_EVENT_TYPE, now, data)
    delivery_id: uuid.UUID | None = await conn.fetchval(
        Q.insert_test_event, tenant_id, endpoint_id, event_id, TEST_EVENT_TYPE,
        f"test:{event_id}", body, now,
    )  # fmt: skip
    return delivery_id


def erasure_key(erasure_id: uuid.UUID) -> str:
    return f"erasure:{erasure_id}"


async def emit_erasure_status(
    conn: Connection, tenant_id: uuid.UUID, erasure_ids: Sequence[uuid.UUID],
    status: ErasureStatus,
) -> None:  # fmt: skip
    """erasure.completed, .held or .cancelled, for the status the erasures just took (each
    read back in the same transaction, with what it shredded and what it keeps)."""
    event_type = ERASURE_EVENTS.get(status)
    if event_type is None or not await conn.fetchval(Q.subscribed, tenant_id, event_type.value):
        return  # one indexed read (for all of them) for a tenant without such a webhook
    for erasure_id in erasure_ids:
        erasure = await conn.fetchrow(E.get, tenant_id, erasure_id)
        assert erasure is not None, "the erasure whose status just changed exists"
        items = await conn.fetch(E.items, tenant_id, erasure_id)
        await emit(conn, tenant_id, event_type, erasure_key(erasure_id),
                   erasure_data(erasure, items))  # fmt: skip


def erasure_data(erasure: Any, items: Sequence[Any]) -> dict[str, Any]:
    """Ids, status, times and categories: what was shredded, what holds keep (by which
    holds) and what statutory retention keeps (until when)."""
    held: dict[str, set[str]] = {}
    for item in items:
        if item["outcome"] == "held":
            held.setdefault(item["category"], set()).update(str(h) for h in item["hold_ids"] or [])
    return {
        "erasure_id": str(erasure["id"]),
        "status": erasure["status"],
        "requested_at": _time(erasure["requested_at"]),
        "due_at": _time(erasure["due_at"]),
        "completed_at": _time(erasure["completed_at"]),
        "cancelled_at": _time(erasure["cancelled_at"]),
        "shredded": sorted({i["category"] for i in items if i["outcome"] == "shredded"}),
        "held": [{"category": c, "hold_ids": sorted(ids)} for c, ids in sorted(held.items())],
        "retained": [
            {"category": i["category"], "until": _time(i["kept_until"])}
            for i in sorted(items, key=lambda i: i["category"])
            if i["outcome"] == "retained"
        ],
    }


async def emit_erasure_overdue(
    conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID, status: str,
    due_at: datetime, now: datetime,
) -> None:  # fmt: skip
    await emit(
        conn, tenant_id, EventType.ERASURE_OVERDUE, erasure_key(erasure_id),
        {"erasure_id": str(erasure_id), "status": status, "due_at": _time(due_at)},
        occurred_at=now,
    )  # fmt: skip


def _hold_data(hold: Any) -> dict[str, Any]:
    """The hold's id, reason (one of five fixed values), scope and categories; never its
    case reference or note, which are free text."""
    return {
        "hold_id": str(hold["id"]),
        "reason": hold["reason"],
        "scope": "subject" if hold["subject_ref_hash"] is not None else "tenant",
        "categories": list(hold["categories"]) if hold["categories"] is not None else None,
        "placed_at": _time(hold["placed_at"]),
        "expires_at": _time(hold["expires_at"]),
    }


async def emit_hold_released(
    conn: Connection, tenant_id: uuid.UUID, hold: Any, released_by: uuid.UUID
) -> None:
    """`hold`: the hold's row as released (released_at set)."""
    data = {**_hold_data(hold), "released_at": _time(hold["released_at"]),
            "released_by": str(released_by)}  # fmt: skip
    await emit(conn, tenant_id, EventType.HOLD_RELEASED, f"hold:{hold['id']}", data)


async def emit_hold_expired(conn: Connection, tenant_id: uuid.UUID, hold: Any) -> None:
    await emit(conn, tenant_id, EventType.HOLD_EXPIRED, f"hold:{hold['id']}", _hold_data(hold))


async def emit_closure_scheduled(
    conn: Connection, tenant_id: uuid.UUID, closure_due_at: datetime, requested_by: uuid.UUID
) -> None:
    await emit(
        conn, tenant_id, EventType.TENANT_CLOSURE_SCHEDULED, "tenant",
        {"closure_due_at": _time(closure_due_at), "requested_by": str(requested_by)},
    )  # fmt: skip
