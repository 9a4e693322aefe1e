"""Server log events for the deletion guarantee's state changes, one function each.

Each takes ids and counts only (typed, so a subject reference, a hold's note or a key
cannot be passed by mistake) and is called after the transaction that made the change
has committed, so a line never reports a change that rolled back. Lines are JSON on
stdout like every other event (vault/observability/logging.py).
"""

from __future__ import annotations

import uuid

import structlog

log = structlog.get_logger("datavault.events")


def erasure_requested(
    tenant_id: uuid.UUID, erasure_id: uuid.UUID, api_key_id: uuid.UUID, *, rate_braked: bool
) -> None:
    log.info(
        "erasure_requested", tenant_id=str(tenant_id), erasure_id=str(erasure_id),
        api_key_id=str(api_key_id), rate_braked=rate_braked,
    )  # fmt: skip


def erasure_shredded(tenant_id: uuid.UUID, erasure_id: uuid.UUID, keys_destroyed: int) -> None:
    """The shred committed (keys destroyed, status in_progress); it completes once the
    shred ledger has its entries."""
    log.info(
        "erasure_shredded", tenant_id=str(tenant_id), erasure_id=str(erasure_id),
        keys_destroyed=keys_destroyed,
    )  # fmt: skip


def erasure_completed(tenant_id: uuid.UUID, erasure_id: uuid.UUID, *, held: bool) -> None:
    """`erasure_completed`, or `erasure_held` when holds or retention keep a part."""
    event = "erasure_held" if held else "erasure_completed"
    log.info(event, tenant_id=str(tenant_id), erasure_id=str(erasure_id))


def erasure_cancelled(tenant_id: uuid.UUID, erasure_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    log.info(
        "erasure_cancelled", tenant_id=str(tenant_id), erasure_id=str(erasure_id),
        api_key_id=str(api_key_id),
    )  # fmt: skip


def hold_placed(tenant_id: uuid.UUID, hold_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    log.info(
        "hold_placed", tenant_id=str(tenant_id), hold_id=str(hold_id), api_key_id=str(api_key_id)
    )


def hold_released(tenant_id: uuid.UUID, hold_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    log.info(
        "hold_released", tenant_id=str(tenant_id), hold_id=str(hold_id),
        api_key_id=str(api_key_id),
    )  # fmt: skip


def hold_expired(tenant_id: uuid.UUID, hold_id: uuid.UUID) -> None:
    log.info("hold_expired", tenant_id=str(tenant_id), hold_id=str(hold_id))


def disclosure_recorded(
    tenant_id: uuid.UUID, disclosure_id: uuid.UUID, seq: int, api_key_id: uuid.UUID
) -> None:
    """A disclosure was appended to the tenant's chain as entry `seq`."""
    log.info(
        "disclosure_recorded", tenant_id=str(tenant_id), disclosure_id=str(disclosure_id),
        seq=seq, api_key_id=str(api_key_id),
    )  # fmt: skip


def key_shredded(
    tenant_id: uuid.UUID, key_kind: str, key_id: str, erasure_id: uuid.UUID | None,
    ledger_seq: int,
) -> None:  # fmt: skip
    """A destroyed key's shred-ledger entry is written: the destruction is committed and
    durable outside PostgreSQL. `key_id` is the key's id (a UUID, or a KEK version)."""
    log.info(
        "key_shredded", tenant_id=str(tenant_id), key_kind=key_kind, key_id=key_id,
        erasure_id=str(erasure_id) if erasure_id else None, ledger_seq=ledger_seq,
    )  # fmt: skip


def transfer_cut(
    tenant_id: uuid.UUID, request_id: str | None, api_key_id: uuid.UUID, reason: str, *,
    started: bool,
) -> None:  # fmt: skip
    """A download, export or upload was cut by the clock (vault/http/transfers.py), its
    streams closed: `reason` is api_key_not_live, data_key_destroyed, no_longer_readable
    (its subject restricted, or its data kept by an erasure) or unconfirmed;
    `started`: whether its status line had gone out (else the reason was answered)."""
    log.warning(
        "transfer_cut", tenant_id=str(tenant_id), request_id=request_id,
        api_key_id=str(api_key_id), reason=reason, started=started,
    )  # fmt: skip


def webhook_registered(tenant_id: uuid.UUID, webhook_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    """An endpoint was registered (never its URL: it may carry a tenant's token)."""
    log.info(
        "webhook_registered", tenant_id=str(tenant_id), webhook_id=str(webhook_id),
        api_key_id=str(api_key_id),
    )  # fmt: skip


def webhook_deleted(tenant_id: uuid.UUID, webhook_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    log.info(
        "webhook_deleted", tenant_id=str(tenant_id), webhook_id=str(webhook_id),
        api_key_id=str(api_key_id),
    )  # fmt: skip


def webhook_attempt_dropped(
    tenant_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> None:
    """A claimed delivery not posted: its endpoint was deleted before its turn came."""
    log.info(
        "webhook_attempt_dropped", tenant_id=str(tenant_id), webhook_id=str(webhook_id),
        delivery_id=str(delivery_id), reason="endpoint_deleted",
    )  # fmt: skip


def webhook_attempt(
    tenant_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID, event_id: uuid.UUID,
    outcome: str, response_code: int | None, duration_ms: int, delivery_status: str,
) -> None:  # fmt: skip
    """One delivery attempt, once recorded: its outcome (a fixed value), the receiver's
    status code and nothing else it answered, and the delivery's status after it."""
    log.info(
        "webhook_attempt", tenant_id=str(tenant_id), webhook_id=str(webhook_id),
        delivery_id=str(delivery_id), event_id=str(event_id), outcome=outcome,
        response_code=response_code, duration_ms=duration_ms, delivery_status=delivery_status,
    )  # fmt: skip
