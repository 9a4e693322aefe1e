"""OpenAPI paths of /v1/webhooks, with the schemas of what they answer."""

from __future__ import annotations

from typing import Any

from vault.domain.webhooks import (
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    MAX_WEBHOOKS_PER_TENANT,
    AttemptOutcome,
    DeliveryStatus,
    EventType,
)
from vault.http.openapi_parts import (
    _NULLABLE_TIME,
    _PAGING,
    _STR,
    _TIME,
    _UUID,
    _list_page,
    _op,
    _path,
    _query,
    answer,
    location,
)

_EVENTS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "enum": [e.value for e in EventType]},
}
_NULLABLE_INT = {"type": ["integer", "null"]}

WEBHOOK_CREATE = {
    "type": "object",
    "required": ["url", "events"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "maxLength": MAX_URL_LENGTH,
            "description": "An https URL (plain http only where the deployment lets webhooks "
            "reach private networks), without credentials or fragment. Refused (422) when its "
            "host is or resolves to a private, loopback or link-local address, unless the "
            "deployment allows that.",
        },
        "events": _EVENTS,
        "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_LENGTH},
    },
}
WEBHOOK = {
    "type": "object",
    "required": ["id", "url", "events", "description", "created_at"],
    "properties": {
        "id": _UUID,
        "url": _STR,
        "events": _EVENTS,
        "description": {"type": ["string", "null"]},
        "created_at": _TIME,
    },
}
WEBHOOK_CREATED = {
    "type": "object",
    "required": [*WEBHOOK["required"], "secret"],
    "properties": {
        **WEBHOOK["properties"],  # type: ignore[dict-item]
        "secret": {
            "type": "string",
            "pattern": "^whsec_",
            "description": "The signing secret (Standard Webhooks), shown in this answer only",
        },
    },
}
_ATTEMPT = {
    "type": "object",
    "properties": {
        "attempted_at": _TIME,
        "outcome": {"type": "string", "enum": [o.value for o in AttemptOutcome]},
        "response_code": _NULLABLE_INT,
        "duration_ms": {"type": "integer"},
    },
}
DELIVERY = {
    "type": "object",
    "required": ["id", "event_id", "type", "status", "attempts"],
    "properties": {
        "id": _UUID,
        "event_id": {**_UUID, "description": "The webhook-id header of every attempt"},
        "type": _STR,
        "status": {"type": "string", "enum": [s.value for s in DeliveryStatus]},
        "created_at": _TIME,
        "delivered_at": _NULLABLE_TIME,
        "next_attempt_at": _NULLABLE_TIME,
        "attempt_count": {"type": "integer"},
        "response_code": {**_NULLABLE_INT, "description": "The latest attempt's answer code"},
        "attempted_at": {**_NULLABLE_TIME, "description": "The latest attempt's time"},
        "attempts": {
            "type": "array",
            "items": _ATTEMPT,
            "description": "The newest attempts (at most 20), newest first",
        },
    },
}


def _webhook_paths() -> dict[str, dict[str, Any]]:
    webhook = _path("webhook_id")
    return {
        "/v1/webhooks": {
            "post": _op(
                "Register a webhook endpoint; the signing secret is shown in this answer only",
                scope="admin", ok=201, body=WEBHOOK_CREATE,
                answers={201: answer("Created", WEBHOOK_CREATED,
                                     headers=location("/v1/webhooks/{webhook_id}"))},
                errors=(400, 409, 413, 415, 422),
                description=f"At most {MAX_WEBHOOKS_PER_TENANT} endpoints per tenant (409 "
                "beyond). Deliveries: POST of {type, timestamp, data} with the Standard "
                "Webhooks headers webhook-id, webhook-timestamp and webhook-signature; any "
                "2xx within 10 s is success, otherwise retried with backoff for over 24 hours.",
            ),
            "get": _op("List the tenant's webhook endpoints (no secrets)", scope="admin",
                       params=_PAGING, ok_schema=_list_page(WEBHOOK), errors=(422,)),
        },
        "/v1/webhooks/{webhook_id}": {
            "parameters": [webhook],
            "get": _op("One webhook endpoint (no secret)", scope="admin", ok_schema=WEBHOOK,
                       errors=(404,)),
            "delete": _op("Delete an endpoint: its secret is destroyed and deliveries still "
                          "queued for it are cancelled", scope="admin", ok=204, errors=(404,)),
        },
        "/v1/webhooks/{webhook_id}/test": {
            "parameters": [webhook],
            "post": _op("Queue a webhook.test event for this endpoint; 202 with its delivery",
                        scope="admin", ok=202, ok_schema=DELIVERY, errors=(404,)),
        },
        "/v1/webhooks/{webhook_id}/deliveries": {
            "parameters": [webhook],
            "get": _op(
                "The endpoint's deliveries, newest first, each with its attempts (status, "
                "answer code, time); kept 30 days after they settle",
                scope="admin", ok_schema=_list_page(DELIVERY), errors=(404, 422),
                params=[_query("status", {"type": "string",
                                          "enum": [s.value for s in DeliveryStatus]},
                               "Only deliveries in this status"), *_PAGING],
            ),
        },
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry": {
            "parameters": [webhook, _path("delivery_id")],
            "post": _op(
                "Send a delivery again (same body and webhook-id): a delivered or failed one "
                "is queued with a fresh retry schedule, a pending one is tried at once",
                scope="admin", ok=202, ok_schema=DELIVERY, errors=(404,),
            ),
        },
    }  # fmt: skip
