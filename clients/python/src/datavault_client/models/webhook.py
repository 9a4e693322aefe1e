"""Answers about webhook endpoints and their deliveries (admin scope)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from datavault_client._fields import Fields
from datavault_client.secret import Secret


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered endpoint as listed: never its secret."""

    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: datetime

    @classmethod
    def parse(cls, f: Fields) -> WebhookEndpoint:
        return cls(
            id=f.text("id"),
            url=f.text("url"),
            events=f.strings("events"),
            description=f.opt_text("description"),
            created_at=f.time("created_at"),
        )


@dataclass(frozen=True)
class CreatedWebhookEndpoint:
    """A new endpoint. `secret` (`whsec_…`, for `WebhookVerifier`) is shown this once; it
    is a `Secret`, masked when printed."""

    endpoint: WebhookEndpoint
    secret: Secret

    @classmethod
    def parse(cls, f: Fields) -> CreatedWebhookEndpoint:
        return cls(endpoint=WebhookEndpoint.parse(f), secret=Secret(f.text("secret")))


@dataclass(frozen=True)
class DeliveryAttempt:
    attempted_at: datetime
    outcome: str
    response_code: int | None
    duration_ms: int

    @classmethod
    def parse(cls, f: Fields) -> DeliveryAttempt:
        return cls(
            attempted_at=f.time("attempted_at"),
            outcome=f.text("outcome"),
            response_code=f.opt_integer("response_code"),
            duration_ms=f.integer("duration_ms"),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one endpoint. `event_id` is the `webhook-id` header of every attempt;
    `status`: `pending`, `delivered` or `failed`; `attempts`: the newest, newest first."""

    id: str
    event_id: str
    type: str
    status: str
    created_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    attempt_count: int
    response_code: int | None
    attempts: list[DeliveryAttempt]

    @classmethod
    def parse(cls, f: Fields) -> WebhookDelivery:
        return cls(
            id=f.text("id"),
            event_id=f.text("event_id"),
            type=f.text("type"),
            status=f.text("status"),
            created_at=f.opt_time("created_at"),
            delivered_at=f.opt_time("delivered_at"),
            next_attempt_at=f.opt_time("next_attempt_at"),
            attempt_count=f.opt_integer("attempt_count") or 0,
            response_code=f.opt_integer("response_code"),
            attempts=[DeliveryAttempt.parse(a) for a in f.objects("attempts")],
        )
