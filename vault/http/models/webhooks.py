"""Webhook endpoints and their deliveries (admin scope)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from msgspec import Meta, Struct

from vault.domain.webhooks import (
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    AttemptOutcome,
    DeliveryStatus,
    EventType,
)
from vault.http.models.common import NextCursor, PageQuery, Time

Events = Annotated[list[EventType], Meta(min_length=1)]


class WebhookCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """Checked by the webhook service field by field (vault/domain/webhooks.py)."""

    url: Annotated[
        str,
        Meta(
            max_length=MAX_URL_LENGTH,
            description="An https URL (plain http only where the deployment lets webhooks "
            "reach private networks), without credentials or fragment. Refused (422) when "
            "its host is or resolves to a private, loopback or link-local address, unless "
            "the deployment allows that.",
        ),
    ]
    events: Events
    description: Annotated[str, Meta(max_length=MAX_DESCRIPTION_LENGTH)] | None = None


class Webhook(Struct, kw_only=True):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    created_at: Time

    @classmethod
    def of(cls, endpoint: dict[str, Any]) -> Webhook:
        return cls(
            id=endpoint["id"], url=endpoint["url"], events=list(endpoint["events"]),
            description=endpoint["description"], created_at=endpoint["created_at"],
        )  # fmt: skip


class WebhookCreated(Webhook, kw_only=True):
    secret: Annotated[
        str,
        Meta(
            pattern="^whsec_",
            description="The signing secret (Standard Webhooks), shown in this answer only",
        ),
    ]


class WebhookPage(Struct):
    items: list[Webhook]
    next_cursor: NextCursor


class DeliveryAttempt(Struct):
    attempted_at: Time
    outcome: AttemptOutcome
    response_code: int | None
    duration_ms: int


class Delivery(Struct, kw_only=True):
    id: uuid.UUID
    event_id: Annotated[uuid.UUID, Meta(description="The webhook-id header of every attempt")]
    type: str
    status: DeliveryStatus
    created_at: Time
    delivered_at: Time | None
    next_attempt_at: Time | None
    attempt_count: int
    response_code: Annotated[int | None, Meta(description="The latest attempt's answer code")]
    attempted_at: Annotated[Time | None, Meta(description="The latest attempt's time")]
    attempts: Annotated[
        list[DeliveryAttempt],
        Meta(description="The newest attempts (at most 20), newest first"),
    ]

    @classmethod
    def of(cls, delivery: dict[str, Any]) -> Delivery:
        attempts = delivery["attempts"]
        last = attempts[0] if attempts else None
        pending = delivery["status"] == DeliveryStatus.PENDING
        return cls(
            id=delivery["id"],
            event_id=delivery["event_id"],
            type=delivery["type"],
            status=DeliveryStatus(delivery["status"]),
            created_at=delivery["created_at"],
            delivered_at=delivery["delivered_at"],
            next_attempt_at=delivery["next_attempt_at"] if pending else None,
            attempt_count=delivery["attempt_count"],
            # The latest attempt's answer code and time (null before the first attempt).
            response_code=last["response_code"] if last else None,
            attempted_at=last["attempted_at"] if last else None,
            attempts=[_attempt(a) for a in attempts],
        )


def _attempt(row: dict[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        row["attempted_at"], AttemptOutcome(row["outcome"]), row["response_code"],
        row["duration_ms"],
    )  # fmt: skip


class DeliveryPage(Struct):
    items: list[Delivery]
    next_cursor: NextCursor


class DeliveryListQuery(PageQuery, forbid_unknown_fields=True, kw_only=True):
    status: Annotated[DeliveryStatus, Meta(description="Only deliveries in this status")] | None = (
        None
    )
